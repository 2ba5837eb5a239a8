"""PASCAL VOC from its devkit directory layout (``VOC20xx/{JPEGImages,Annotations,ImageSets}``)."""

import logging
import os
import re
from typing import Sequence
from xml.etree import ElementTree

import numpy as np

from ssd_jax.data import sources

logger = logging.getLogger("ssd_jax.data")

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor")


def voc_directory(root: str, split: str = "trainval", years: Sequence[str] | str = ("2007", "2012"),
                  class_names: Sequence[str] | None = VOC_CLASSES,
                  keep_difficult: bool = True) -> sources.RecordSource:
  """PASCAL VOC read from the devkit layout; several years give their union (VOC07+12).

  For each year the images listed in ``VOC<year>/ImageSets/Main/<split>.txt`` are read, in file
  order, years in the given order; ``VOC<year>`` is looked up in ``root`` and in
  ``root/VOCdevkit``. With no years, ``root`` itself is the VOC folder (``root/JPEGImages``,
  ``root/Annotations``, ``root/ImageSets/Main``): the usual layout of one's own data. Annotations
  (``Annotations/<id>.xml``) are parsed here; pixels are decoded lazily by ``as_dataset``. The
  image of ``<id>`` is ``JPEGImages/<filename>`` (the XML's ``<filename>``, as labelling tools
  write it: ``IMG_2385.JPG``), else ``JPEGImages/<id>.<ext>`` for any image extension in any
  case (:meth:`ImageIndex.find`).

  Box convention: VOC ``bndbox`` coordinates are 1-based pixel indices; like the Caffe SSD and
  ssd.pytorch loaders we subtract 1 from all four and divide by the ``<size>`` width/height,
  ``xmin_n = (xmin - 1) / width``, ``xmax_n = (xmax - 1) / width`` (same for y). (tfds' ``voc``
  divides without subtracting 1, i.e. its boxes are shifted by one pixel.) ``truncated`` is
  ignored; ``difficult`` (missing = 0) becomes ``difficult``; ``area`` is the box's
  ``(xmax - xmin) * (ymax - ymin)`` in pixels (clipped to the image; no +1).

  Args:
    root: directory containing ``VOC2007``, ``VOC2012``... or a ``VOCdevkit`` folder with them;
      with ``years=()``, the VOC folder itself.
    split: image set name, e.g. ``'trainval'``, ``'train'``, ``'val'``, ``'test'``.
    years: one year or several, e.g. ``('2007', '2012')`` for VOC07+12; ``()`` for none.
    class_names: the classes, background excluded; label ``k`` is ``class_names[k - 1]``. None:
      the object names found in this split's annotations, sorted (logged).
    keep_difficult: if False, difficult objects are removed from the annotations.

  Returns:
    A source of examples with ``image_id`` the file stem (e.g. ``'000005'``).

  Raises:
    ValueError: missing directory or image set (naming the image sets there); more than a small
      share of the images missing (``sources.drop_missing_images``); an annotation
      file that is missing, does not parse, lacks a positive ``<size>`` or a numeric ``bndbox``;
      an object of a class not in ``class_names`` (each message names the file). Bad boxes are
      dropped or clipped with a warning (see ``sources.normalize_pixel_boxes``); images without
      objects are kept.
  """
  years = (years,) if isinstance(years, str) else tuple(years)
  folders = [_find_year_dir(root, year) for year in years] if years else [_voc_folder(root)]
  entries = []  # (folder, image id)
  for folder in folders:
    entries += [(folder, image_id) for image_id in _image_set(folder, split)]
  xml_file = lambda folder, image_id: os.path.join(folder, "Annotations", f"{image_id}.xml")
  if class_names is None:
    class_names = sorted({name for folder, image_id in entries
                          for name in object_names(xml_file(folder, image_id))})
    logger.info("VOC %s in %s: %d classes found in the annotations: %s", split, root,
                len(class_names), class_names)
  labels = {name: k + 1 for k, name in enumerate(class_names)}
  issues = sources.AnnotationIssues()
  images = {folder: ImageIndex(os.path.join(folder, "JPEGImages")) for folder in folders}
  records = [parse_annotation(xml_file(folder, image_id), images[folder], image_id, labels,
                              keep_difficult, issues)
             for folder, image_id in entries]
  where = f"VOC {split} {'+'.join(years)} in {root}"
  issues.summarize(where)
  return sources.RecordSource(sources.drop_missing_images(records, where), class_names)


class ImageIndex:
  """The image files of one folder (``sources.IMAGE_EXTENSIONS``), found by name or by stem."""

  def __init__(self, folder: str):
    self.folder = folder
    names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    images = [n for n in names if os.path.splitext(n)[1].lower() in sources.IMAGE_EXTENSIONS]
    self.names = set(images)
    # Fallbacks, first file wins: the name in any case, the stem with any extension.
    self.by_lower_name: dict[str, str] = {}
    self.by_stem: dict[str, str] = {}
    for n in images:
      self.by_lower_name.setdefault(n.lower(), n)
      self.by_stem.setdefault(os.path.splitext(n)[0], n)

  def find(self, image_id: str, filename: str | None = None) -> str:
    """The path of ``filename`` (a bare name; a path's directories are ignored, as labelling tools
    write the labeller's own absolute path) if the folder has it, in that case or another, else
    of ``<image_id>.<ext>`` with any image extension; a path that does not exist
    (``<image_id>.jpg``) if none is there."""
    name = os.path.basename((filename or "").replace("\\", "/").strip())
    found = (name if name in self.names else self.by_lower_name.get(name.lower())
             or self.by_stem.get(image_id))
    return os.path.join(self.folder, found or f"{image_id}.jpg")


def _voc_folder(root: str) -> str:
  if not os.path.isdir(os.path.join(root, "Annotations")):
    found = sorted(n for n in os.listdir(root) if n.startswith("VOC")) if os.path.isdir(root) \
        else []
    hint = (f"; it holds {found}: set the years (config.data.train_years / eval_years)"
            if found else "")
    raise ValueError(f"{root} is not a VOC folder: it has no Annotations/ folder{hint}")
  return root


def _image_set(folder: str, split: str) -> list[str]:
  """Image ids of ``folder/ImageSets/Main/<split>.txt``, in file order."""
  set_dir = os.path.join(folder, "ImageSets", "Main")
  set_file = os.path.join(set_dir, f"{split}.txt")
  if not os.path.isfile(set_file):
    # Not the devkit's per-class lists (aeroplane_trainval.txt, ...).
    per_class = re.compile(r".+_(train|val|trainval|test)\.txt$")
    known = sorted(n[:-4] for n in os.listdir(set_dir)
                   if n.endswith(".txt") and not per_class.match(n)) \
        if os.path.isdir(set_dir) else []
    raise ValueError(f"VOC image set not found: {set_file} (image sets there: {known})")
  with open(set_file) as f:
    return [line.split()[0] for line in f if line.strip()]


def object_names(xml_file: str) -> list[str]:
  try:
    root = ElementTree.parse(xml_file).getroot()
  except (ElementTree.ParseError, OSError) as e:
    raise ValueError(f"{xml_file}: cannot parse VOC annotation: {e}") from e
  return [(obj.findtext("name") or "").strip() for obj in root.findall("object")]


def _find_year_dir(root: str, year: str) -> str:
  candidates = [os.path.join(root, f"VOC{year}"), os.path.join(root, "VOCdevkit", f"VOC{year}")]
  for candidate in candidates:
    if os.path.isdir(candidate):
      return candidate
  raise ValueError(f"VOC{year} not found: none of {candidates} is a directory")


def parse_annotation(xml_file: str, images: ImageIndex, image_id: str, labels: dict[str, int],
                     keep_difficult: bool, issues: sources.AnnotationIssues) -> sources.Record:
  """One VOC XML file -> ``Record`` (see ``voc_directory`` for conventions); its image is looked
  up in ``images`` by the XML's ``<filename>``, then by ``image_id``."""
  try:
    tree = ElementTree.parse(xml_file)
  except (ElementTree.ParseError, OSError) as e:
    raise ValueError(f"{xml_file}: cannot parse VOC annotation: {e}") from e
  root = tree.getroot()
  image_path = images.find(image_id, root.findtext("filename"))
  try:
    width = float(root.findtext("size/width"))
    height = float(root.findtext("size/height"))
  except (TypeError, ValueError) as e:
    raise ValueError(f"{xml_file}: missing or non-numeric <size><width>/<height>") from e
  if not (width > 0 and height > 0):
    raise ValueError(f"{xml_file}: image size must be positive, got {width:g}x{height:g}")

  boxes, classes, difficult, names = [], [], [], []
  for k, obj in enumerate(root.findall("object")):
    name = (obj.findtext("name") or "").strip()
    if name not in labels:
      raise ValueError(f"{xml_file}: object {k} has class {name!r}, which is not among the "
                       f"{len(labels)} classes of the training data: {list(labels)}")
    is_difficult = (obj.findtext("difficult") or "0").strip() == "1"
    if is_difficult and not keep_difficult:
      continue
    raw = [obj.findtext(f"bndbox/{c}") for c in ("xmin", "ymin", "xmax", "ymax")]
    try:
      coords = [float(v) for v in raw]
    except (TypeError, ValueError) as e:
      raise ValueError(f"{xml_file}: object {k} ({name!r}) has a missing or non-numeric bndbox "
                       f"{raw}") from e
    boxes.append([c - 1.0 for c in coords])
    classes.append(labels[name])
    difficult.append(is_difficult)
    names.append(f"object {k} ({name!r}, bndbox xmin,ymin,xmax,ymax = {','.join(raw)})")

  pixel_boxes = np.array(boxes).reshape(-1, 4)
  normalized, keep = sources.normalize_pixel_boxes(pixel_boxes, width, height, xml_file, names,
                                                   issues)
  return sources.Record(
      image_path=image_path, image_id=image_id, boxes=normalized,
      labels=np.array(classes, np.int32)[keep], difficult=np.array(difficult, bool)[keep],
      crowd=np.zeros(len(normalized), bool),
      area=sources.pixel_box_areas(pixel_boxes, width, height)[keep])
