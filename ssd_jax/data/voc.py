"""PASCAL VOC from its devkit directory layout (``VOC20xx/{JPEGImages,Annotations,ImageSets}``)."""

import os
from typing import Sequence
from xml.etree import ElementTree

import numpy as np

from ssd_jax.data import sources

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor")


def voc_directory(root: str, split: str = "trainval", years: Sequence[str] | str = ("2007", "2012"),
                  class_names: Sequence[str] = VOC_CLASSES,
                  keep_difficult: bool = True) -> sources.RecordSource:
  """PASCAL VOC read from the devkit layout; several years give their union (VOC07+12).

  For each year the images listed in ``VOC<year>/ImageSets/Main/<split>.txt`` are read, in file
  order, years in the given order; ``VOC<year>`` is looked up in ``root`` and in
  ``root/VOCdevkit``. Annotations (``Annotations/<id>.xml``) are parsed here; pixels
  (``JPEGImages/<id>.jpg``) are decoded lazily by ``as_dataset``.

  Box convention: VOC ``bndbox`` coordinates are 1-based pixel indices; like the Caffe SSD and
  ssd.pytorch loaders we subtract 1 from all four and divide by the ``<size>`` width/height,
  ``xmin_n = (xmin - 1) / width``, ``xmax_n = (xmax - 1) / width`` (same for y). (tfds' ``voc``
  divides without subtracting 1, i.e. its boxes are shifted by one pixel.) ``truncated`` is
  ignored; ``difficult`` (missing = 0) becomes ``difficult``.

  Args:
    root: directory containing ``VOC2007``, ``VOC2012``... or a ``VOCdevkit`` folder with them.
    split: image set name, e.g. ``'trainval'``, ``'train'``, ``'val'``, ``'test'``.
    years: one year or several, e.g. ``('2007', '2012')`` for VOC07+12.
    class_names: the classes, background excluded; label ``k`` is ``class_names[k - 1]``.
    keep_difficult: if False, difficult objects are removed from the annotations.

  Returns:
    A source of examples with ``image_id`` the file stem (e.g. ``'000005'``).

  Raises:
    ValueError: missing directory or image set; an annotation file that is missing, does not
      parse, lacks a positive ``<size>`` or a numeric ``bndbox``; an object of a class not in
      ``class_names`` (each message names the file). Bad boxes are dropped or clipped with a
      warning (see ``sources.normalize_pixel_boxes``); images without objects are kept.
  """
  years = (years,) if isinstance(years, str) else tuple(years)
  labels = {name: k + 1 for k, name in enumerate(class_names)}
  issues = sources.AnnotationIssues()
  records = []
  for year in years:
    year_dir = _find_year_dir(root, year)
    set_file = os.path.join(year_dir, "ImageSets", "Main", f"{split}.txt")
    if not os.path.isfile(set_file):
      raise ValueError(f"VOC image set not found: {set_file}")
    with open(set_file) as f:
      image_ids = [line.split()[0] for line in f if line.strip()]
    for image_id in image_ids:
      xml_file = os.path.join(year_dir, "Annotations", f"{image_id}.xml")
      image_path = os.path.join(year_dir, "JPEGImages", f"{image_id}.jpg")
      records.append(_parse_annotation(xml_file, image_path, image_id, labels, keep_difficult,
                                       issues))
  issues.summarize(f"VOC {split} {'+'.join(years)} in {root}")
  return sources.RecordSource(records, class_names)


def _find_year_dir(root: str, year: str) -> str:
  candidates = [os.path.join(root, f"VOC{year}"), os.path.join(root, "VOCdevkit", f"VOC{year}")]
  for candidate in candidates:
    if os.path.isdir(candidate):
      return candidate
  raise ValueError(f"VOC{year} not found: none of {candidates} is a directory")


def _parse_annotation(xml_file: str, image_path: str, image_id: str, labels: dict[str, int],
                      keep_difficult: bool, issues: sources.AnnotationIssues) -> sources.Record:
  """One ``Annotations/<id>.xml`` file -> ``Record`` (see ``voc_directory`` for conventions)."""
  try:
    tree = ElementTree.parse(xml_file)
  except (ElementTree.ParseError, OSError) as e:
    raise ValueError(f"{xml_file}: cannot parse VOC annotation: {e}") from e
  root = tree.getroot()
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
      raise ValueError(f"{xml_file}: object {k} has unknown class {name!r}; known classes: "
                       f"{sorted(labels)}")
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

  normalized, keep = sources.normalize_pixel_boxes(
      np.array(boxes).reshape(-1, 4), width, height, xml_file, names, issues)
  return sources.Record(
      image_path=image_path, image_id=image_id, boxes=normalized,
      labels=np.array(classes, np.int32)[keep], difficult=np.array(difficult, bool)[keep],
      crowd=np.zeros(len(normalized), bool))
