"""One's own dataset as one folder, in whichever layout a labelling tool exported it.

``folder_source(root, role)`` recognizes the layout (logged), reads its annotations, and gives the
images of one role (``'train'``, ``'val'``, ``'eval'``). Layouts, tried in this order:

  voc   ``Annotations/*.xml`` + ``JPEGImages/`` or ``images/`` (``ImageSets/Main/<split>.txt``
        optional): each image found by the XML's ``<filename>`` or by its id with any image
        extension (``IMG_2385.JPG``); or ``*.xml`` beside their images, in ``root`` (labelImg),
        ``root/<split>/`` (Roboflow's VOC export) or ``root/images/<split>/``.
  coco  COCO JSON files in ``root``, ``root/annotations/`` or ``root/<split>/`` (Roboflow:
        ``<split>/_annotations.coco.json``), the split named by the file or its folder; images
        beside the JSON, in ``root``, ``root/images[/<split>]`` or ``root/<split>[/images]``.
  yolo  ``images/<split>/`` + ``labels/<split>/`` (Ultralytics), ``<split>/images/`` +
        ``<split>/labels/`` (Roboflow), ``images/`` + ``labels/``, or ``.txt`` beside the images
        (labelImg), with the class names in ``data.yaml`` or ``classes.txt``
        (:mod:`ssd_jax.data.yolo`).

Splits are folder, file or image-set names: ``train``, ``trainval``, ``val`` (``valid``,
``validation``), ``test``. The reported (``'eval'``) images are the ``test`` split; without one,
the ``val`` split (what Ultralytics reports); without either, a seeded hold-out of the training
images (``holdout``, default 20 %, logged with its size), so that every run reports a test mAP on
images it never trained on. A validation split (``'val'``, for ``checkpoints_best/``), when asked
for, is the folder's ``val`` split if the reported one is not, else another such hold-out.

Classes: the YOLO and COCO files name them; for VOC they are the object names of all the
folder's annotations, sorted (a class without a training box is logged), unless given.
"""

import dataclasses
import json
import logging
import os
import re
from typing import Optional, Sequence

import numpy as np

from ssd_jax.data import coco, sources, voc, yolo

logger = logging.getLogger("ssd_jax.data")

ROLES = ("train", "val", "eval")
# Split names as tools write them -> this module's names.
_SPLIT_NAMES = {"trainval": "trainval", "train": "train", "validation": "val", "valid": "val",
                "val": "val", "test": "test"}
_SPLIT_PATTERN = re.compile(r"(?<![a-z])(trainval|train|validation|valid|val|test)(?![a-z])")
ALL = "all"  # The one split of a folder that names none.


@dataclasses.dataclass(frozen=True)
class Folder:
  """A dataset folder as read.

  Attributes:
    format: ``'voc'``, ``'coco'`` or ``'yolo'``.
    layout: what was found, for the log (e.g. ``'Annotations/ + JPEGImages/, image sets test,
      trainval'``).
    class_names: names of labels ``1..C``.
    splits: split name (``train``, ``trainval``, ``val``, ``test``, or :data:`ALL`) -> records.
  """
  format: str
  layout: str
  class_names: list[str]
  splits: dict[str, list[sources.Record]]


def split_name(name: str) -> Optional[str]:
  """The split a folder or file name stands for (``'valid'`` -> ``'val'``,
  ``'instances_train2017.json'`` -> ``'train'``), or None."""
  match = _SPLIT_PATTERN.search(re.sub(r"\d+", "", name.lower()))
  return _SPLIT_NAMES[match.group(1)] if match else None


def read_folder(root: str, class_names: Optional[Sequence[str]] = None) -> Folder:
  """Recognizes ``root``'s layout and reads its annotations (module docstring).

  Args:
    root: the dataset folder.
    class_names: the label order for VOC (None: the object names found, sorted); YOLO and COCO
      folders name their classes themselves.

  Raises:
    ValueError: ``root`` is not a folder or fits no layout (naming what was looked for); the
      errors of the format's reader (naming the file).
  """
  if not os.path.isdir(root):
    raise ValueError(f"config.data.root={root!r} is not a directory")
  for reader in (_read_voc, _read_coco, _read_yolo):
    folder = reader(root, class_names)
    if folder is not None:
      return folder
  raise ValueError(
      f"{root}: no dataset layout recognized. Looked for PASCAL VOC (Annotations/*.xml, or *.xml "
      "beside the images, in the folder or its train/val/test subfolders), COCO JSON (*.json in "
      "the folder, annotations/ or train/val/test subfolders) and YOLO txt (images/ + labels/, "
      "<split>/images + <split>/labels, or .txt beside the images, with data.yaml or classes.txt "
      f"naming the classes). It holds: {sorted(os.listdir(root))[:20]}")


def folder_source(root: str, role: str, class_names: Optional[Sequence[str]] = None,
                  holdout: float = 0.2, seed: int = 0,
                  validation: bool = False) -> Optional[sources.RecordSource]:
  """The images of ``role`` in the dataset folder ``root`` (module docstring).

  Args:
    root: the dataset folder.
    role: ``'train'``, ``'val'`` or ``'eval'``.
    class_names: see :func:`read_folder`.
    holdout: share of the training images held out for each role the folder has no split for.
    seed: seeds the hold-out (the same seed, the same images).
    validation: whether a validation split is wanted; without it ``role='val'`` gives None.

  Raises:
    ValueError: see :func:`read_folder`; more than ``sources.MAX_UNREADABLE_SHARE`` of the role's
      images missing (naming a few); a hold-out of too few images.
  """
  if role not in ROLES:
    raise ValueError(f"role must be one of {ROLES}, got {role!r}")
  if not 0 < holdout < 1:
    raise ValueError(f"config.data.holdout must be in (0, 1), got {holdout}")
  folder = read_folder(root, class_names)
  roles, how = assign_roles(folder.splits, holdout, seed, validation)
  log = logger.info if role == "train" else logger.debug
  log("%s: %s dataset (%s), %d classes %s; %s.", root, folder.format, folder.layout,
      len(folder.class_names), folder.class_names, how)
  if role == "train":
    trained = {label for r in roles["train"] for label in r.labels}
    for k, name in enumerate(folder.class_names):
      if k + 1 not in trained:
        logger.warning("%s: class %r has no box in the training images.", root, name)
  if roles.get(role) is None:
    return None
  return sources.RecordSource(sources.drop_missing_images(roles[role], f"{root} ({role})"),
                              folder.class_names)


def assign_roles(splits: dict[str, list[sources.Record]], holdout: float, seed: int,
                 validation: bool) -> tuple[dict[str, Optional[list[sources.Record]]], str]:
  """``({'train': records, 'val': records or None, 'eval': records}, what was done)`` from a
  folder's splits (module docstring), hold-outs drawn from the training images with ``seed``."""
  test, val = splits.get("test"), splits.get("val")
  val_reported = test is None and val is not None
  val_used = val is not None and (val_reported or validation)
  if "train" in splits and (val_used or "trainval" not in splits):
    train, how = splits["train"], ["train split"]
  elif "trainval" in splits or ALL in splits:
    name = "trainval" if "trainval" in splits else ALL
    taken = {r.image_path for r in val} if val_used else set()  # trainval holds val
    train = [r for r in splits[name] if r.image_path not in taken]
    how = [f"{name} split" if name != ALL else "all images"]
  else:
    raise ValueError(f"no training images: the folder's splits are {sorted(splits)}")
  roles = {"train": train, "val": None, "eval": test}
  if test is not None:
    how.append("test split reported")
  elif val_reported:
    roles["eval"] = val
    how.append("no test split: the val split is reported")
  for stream, role, wanted in ((0, "eval", roles["eval"] is None),
                               (1, "val", validation and (val is None or val_reported))):
    if wanted:
      roles["train"], roles[role] = _hold_out(roles["train"], holdout, (seed, stream))
      how.append(f"{len(roles[role])} of the training images held out as the "
                 f"{'reported test' if role == 'eval' else 'validation'} split (seed {seed})")
  if validation and roles["val"] is None:
    roles["val"] = val
    how.append("val split for validation")
  how.append(f"{len(roles['train'])} training images")
  return roles, "; ".join(how)


def _hold_out(records: list[sources.Record], share: float, seed: tuple[int, int]
              ) -> tuple[list[sources.Record], list[sources.Record]]:
  """(kept, held out): ``round(share * n)`` (at least 1, at most ``n - 1``) records drawn with
  ``seed`` (the split seed and a stream per held-out role), both in their original order."""
  if len(records) < 2:
    raise ValueError(f"{len(records)} training image(s): too few to hold out a test split; add "
                     "images or a test split")
  count = min(len(records) - 1, max(1, round(share * len(records))))
  held = np.zeros(len(records), bool)
  held[np.random.default_rng(seed).permutation(len(records))[:count]] = True
  return ([r for r, h in zip(records, held) if not h], [r for r, h in zip(records, held) if h])


# ---------------------------------------------------------------------------------------------
# Readers: root -> Folder, or None when the layout is not theirs.
# ---------------------------------------------------------------------------------------------
def _split_dirs(root: str) -> dict[str, str]:
  """``{split: path}`` of ``root``'s subfolders named for a split."""
  found = {}
  for name in sorted(os.listdir(root)):
    split = split_name(name)
    if split and os.path.isdir(os.path.join(root, name)):
      found.setdefault(split, os.path.join(root, name))
  return found


def _files(folder: str, extensions: Sequence[str]) -> list[str]:
  if not os.path.isdir(folder):
    return []
  return [os.path.join(folder, n) for n in sorted(os.listdir(folder))
          if os.path.splitext(n)[1].lower() in extensions]


def _subdir(root: str, *names: str) -> Optional[str]:
  """The first of ``names`` that is a subfolder of ``root``, in any case (``annotations``)."""
  by_lower = {n.lower(): n for n in sorted(os.listdir(root))
              if os.path.isdir(os.path.join(root, n))}
  found = next((by_lower[n.lower()] for n in names if n.lower() in by_lower), None)
  return None if found is None else os.path.join(root, found)


def _read_voc(root: str, class_names: Optional[Sequence[str]]) -> Optional[Folder]:
  """VOC XML: ``Annotations/`` (+ image sets), or XML beside the images."""
  xml_sets: dict[str, list[str]] = {}  # split -> XML files
  image_dirs: dict[str, str] = {}  # XML folder -> image folder
  annotations = _subdir(root, "Annotations")
  if annotations and _files(annotations, (".xml",)):
    image_dir = _subdir(root, "JPEGImages", "images") or root
    image_dirs[annotations] = image_dir
    set_dir = os.path.join(root, "ImageSets", "Main")
    for set_file in _files(set_dir, (".txt",)):
      name = os.path.basename(set_file)[:-4]
      if name in _SPLIT_NAMES and _SPLIT_NAMES[name] not in xml_sets:
        with open(set_file) as f:
          ids = [line.split()[0] for line in f if line.strip()]
        xml_sets[_SPLIT_NAMES[name]] = [os.path.join(annotations, f"{i}.xml") for i in ids]
    if not xml_sets:
      xml_sets[ALL] = _files(annotations, (".xml",))
    layout = (f"{os.path.relpath(annotations, root)}/ + {os.path.relpath(image_dir, root)}/, "
              f"image sets {', '.join(sorted(xml_sets))}")
  elif _files(root, (".xml",)):
    xml_sets[ALL] = _files(root, (".xml",))
    image_dirs[root] = root
    layout = "XML beside the images"
  else:
    parent = root
    for candidate in (root, _subdir(root, "images")):
      for split, path in (_split_dirs(candidate).items() if candidate else ()):
        xml_files = _files(path, (".xml",))
        if xml_files:
          xml_sets[split], image_dirs[path], parent = xml_files, path, candidate
      if xml_sets:
        break
    if not xml_sets:
      return None
    layout = (f"XML beside the images in {os.path.relpath(parent, root)}/"
              f"{{{','.join(sorted(xml_sets))}}}/")
  if class_names is None:
    class_names = sorted({name for files in xml_sets.values() for f in files
                          for name in voc.object_names(f)})
  labels = {name: k + 1 for k, name in enumerate(class_names)}
  issues = sources.AnnotationIssues()
  indexes = {d: voc.ImageIndex(image_dir) for d, image_dir in image_dirs.items()}
  splits = {split: [voc.parse_annotation(f, indexes[os.path.dirname(f)],
                                         os.path.basename(f)[:-4], labels, True, issues)
                    for f in files]
            for split, files in xml_sets.items()}
  issues.summarize(root)
  return Folder("voc", layout, list(class_names), splits)


def _coco_files(root: str) -> dict[str, tuple[str, str]]:
  """``{split: (JSON file, its first image's file_name)}`` of the COCO files in ``root``,
  ``root/annotations`` or a split folder; a single unnamed file in ``root`` is :data:`ALL`."""
  found: dict[str, tuple[str, str]] = {}
  candidates = _files(root, (".json",)) + _files(os.path.join(root, "annotations"), (".json",))
  for split, path in _split_dirs(root).items():
    candidates += [(f, split) for f in _files(path, (".json",))]
  for entry in candidates:
    path, split = entry if isinstance(entry, tuple) else (entry, None)
    split = split or split_name(os.path.basename(path)) or ALL
    first_image = None if split in found else _first_coco_image(path)
    if first_image is not None:
      found[split] = (path, first_image)
  if ALL in found and len(found) > 1:
    del found[ALL]  # An unnamed file beside named ones (e.g. a class list) is not a split.
  return found


def _first_coco_image(path: str) -> Optional[str]:
  """The ``file_name`` of the first image of a COCO file (``''`` if it lists none); None if
  ``path`` is not a COCO file."""
  try:
    with open(path) as f:
      content = json.load(f)
  except (OSError, ValueError):
    return None
  if not (isinstance(content, dict) and "images" in content and "categories" in content):
    return None
  images = content["images"]
  return str(images[0].get("file_name", "")) if images and isinstance(images[0], dict) else ""


def _read_coco(root: str, class_names: Optional[Sequence[str]]) -> Optional[Folder]:
  del class_names  # The JSON names the classes.
  files = _coco_files(root)
  if not files:
    return None
  first = "train" if "train" in files else sorted(files)[0]
  names = None
  splits = {}
  for split in [first] + sorted(set(files) - {first}):
    path, first_image = files[split]
    source = coco.coco_json(path, _coco_image_dir(root, path, first_image, split),
                            class_names=names)
    names = names or source.class_names
    splits[split] = list(source.records)
  layout = ", ".join(f"{split}: {os.path.relpath(files[split][0], root)}"
                     for split in sorted(files))
  return Folder("coco", layout, list(names), splits)


def _coco_image_dir(root: str, annotation_file: str, first_image: str, split: str) -> str:
  """The folder holding the JSON's first image (the JSON's own folder if none is found: the
  missing images are then counted and named)."""
  here = os.path.dirname(annotation_file)
  candidates = [here, root, os.path.join(root, "images")]
  for name in sorted(os.listdir(root)):
    if split_name(name) == split:
      candidates += [os.path.join(root, name), os.path.join(root, name, "images"),
                     os.path.join(root, "images", name)]
  for candidate in candidates:
    if first_image and os.path.isfile(os.path.join(candidate, first_image)):
      return candidate
  return here


def _read_yolo(root: str, class_names: Optional[Sequence[str]]) -> Optional[Folder]:
  del class_names  # data.yaml or classes.txt names the classes.
  image_sets: dict[str, list[str]] = {}
  images = os.path.join(root, "images")
  if os.path.isdir(images) and os.path.isdir(os.path.join(root, "labels")):
    for split, path in _split_dirs(images).items():
      image_sets[split] = _files(path, sources.IMAGE_EXTENSIONS)
    if not image_sets:
      image_sets[ALL] = _files(images, sources.IMAGE_EXTENSIONS)
    layout = f"images/ + labels/, splits {', '.join(sorted(image_sets))}"
  else:
    for split, path in _split_dirs(root).items():
      if os.path.isdir(os.path.join(path, "labels")):
        image_sets[split] = _files(os.path.join(path, "images"), sources.IMAGE_EXTENSIONS)
    layout = f"<split>/images + <split>/labels, splits {', '.join(sorted(image_sets))}"
    if not image_sets and _files(root, (".txt",)) and _files(root, sources.IMAGE_EXTENSIONS):
      image_sets[ALL] = _files(root, sources.IMAGE_EXTENSIONS)
      layout = ".txt beside the images"
  if not image_sets:
    return None
  names_file = yolo.class_names_file(root)
  if names_file is None:
    raise ValueError(f"{root}: YOLO labels ({layout}) but no file naming the classes: expected "
                     f"one of {list(yolo.YAML_FILES + yolo.NAME_FILES)} in the folder")
  names = yolo.read_class_names(names_file)
  issues = sources.AnnotationIssues()
  splits = {split: yolo.yolo_records(paths, names, issues) for split, paths in image_sets.items()}
  issues.summarize(root)
  return Folder("yolo", f"{layout}; classes from {os.path.basename(names_file)}", names, splits)
