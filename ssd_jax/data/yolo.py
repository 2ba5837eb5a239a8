"""YOLO txt annotations, as Ultralytics, Roboflow and labelImg write them.

One ``.txt`` per image, one object per line: ``class cx cy w h``, the class a 0-based index into
the class names, the box normalized to ``[0, 1]`` by the image's width and height (centre and
size). A line of more than five numbers is a segmentation polygon ``class x1 y1 x2 y2 ...``
(Ultralytics' segment format), whose box is the polygon's extent. An image without a label file,
or with an empty one, has no objects (a background image; kept).

Class names come from ``data.yaml`` (``names``: a list, or a dict index -> name) or from
``classes.txt`` / ``obj.names`` (one name per line).
"""

import os
from typing import Optional, Sequence

import numpy as np
from PIL import Image
import yaml

from ssd_jax.data import sources

YAML_FILES = ("data.yaml", "dataset.yaml", "data.yml")
NAME_FILES = ("classes.txt", "obj.names")


def class_names_file(root: str) -> Optional[str]:
  """The file in ``root`` that names the classes (:data:`YAML_FILES`, :data:`NAME_FILES`, in
  that order), or None."""
  for name in YAML_FILES + NAME_FILES:
    if os.path.isfile(os.path.join(root, name)):
      return os.path.join(root, name)
  return None


def read_class_names(path: str) -> list[str]:
  """The class names of a ``data.yaml`` (``names``) or ``classes.txt`` file, index order.

  Raises:
    ValueError: the file does not parse, has no ``names``, or its dict keys are not ``0..C-1``.
  """
  if not path.endswith((".yaml", ".yml")):
    with open(path) as f:
      names = [line.strip() for line in f if line.strip()]
  else:
    try:
      with open(path) as f:
        content = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
      raise ValueError(f"{path}: cannot parse YAML: {e}") from e
    names = content.get("names") if isinstance(content, dict) else None
    if isinstance(names, dict):
      if sorted(names) != list(range(len(names))):
        raise ValueError(f"{path}: 'names' keys must be 0..{len(names) - 1}, got {sorted(names)}")
      names = [names[k] for k in range(len(names))]
    if not isinstance(names, list):
      raise ValueError(f"{path}: needs a 'names' list (or dict index -> name) of the classes")
    names = [str(n) for n in names]
  if not names:
    raise ValueError(f"{path}: names no classes")
  return names


def label_file(image_path: str) -> str:
  """Ultralytics' rule: the label file of ``.../images/<sub>/x.jpg`` is ``.../labels/<sub>/x.txt``
  (the last ``images`` directory of the path replaced); with no ``images`` directory in the path,
  the ``.txt`` beside the image (labelImg)."""
  parts = os.path.normpath(image_path).split(os.sep)
  stem = os.path.splitext(parts[-1])[0] + ".txt"
  for k in range(len(parts) - 2, -1, -1):
    if parts[k] == "images":
      return os.sep.join(parts[:k] + ["labels"] + parts[k + 1:-1] + [stem])
  return os.sep.join(parts[:-1] + [stem])


def image_size(path: str) -> Optional[tuple[int, int]]:
  """``(width, height)`` from the image's header (not decoded), or None if it cannot be read."""
  try:
    with Image.open(path) as im:
      return im.size
  except (OSError, ValueError):
    return None


def yolo_records(image_paths: Sequence[str], class_names: Sequence[str],
                 issues: sources.AnnotationIssues) -> list[sources.Record]:
  """The ``Record`` of each image and its label file (:func:`label_file`), in order.

  ``image_id`` is the image's file stem. An image whose header cannot be read gets no boxes here
  and is counted by ``sources.drop_missing_images`` / reading, as a missing image would be.

  Raises:
    ValueError: a label line that is not ``class`` plus four (or an even number of) numbers, or
      whose class index is not in ``0..C-1`` (naming the file and line).
  """
  records = []
  for path in image_paths:
    size, labels_path = image_size(path), label_file(path)
    lines = _label_lines(labels_path)
    if size is None:  # Missing or not an image: dropped or skipped as such, and counted.
      records.append(_record(path, np.zeros((0, 4)), np.zeros(0, np.int32)))
      continue
    width, height = size
    boxes, labels, names = [], [], []
    for number, line in lines:
      label, box = _parse_line(line, f"{labels_path}:{number}", len(class_names))
      boxes.append(box * [width, height, width, height])
      labels.append(label + 1)
      names.append(f"line {number} ({class_names[label]!r})")
    pixel_boxes = np.array(boxes, np.float64).reshape(-1, 4)
    normalized, keep = sources.normalize_pixel_boxes(pixel_boxes, width, height, labels_path,
                                                     names, issues)
    records.append(sources.Record(
        image_path=path, image_id=os.path.splitext(os.path.basename(path))[0], boxes=normalized,
        labels=np.array(labels, np.int32)[keep], difficult=np.zeros(len(normalized), bool),
        crowd=np.zeros(len(normalized), bool),
        area=sources.pixel_box_areas(pixel_boxes, width, height)[keep]))
  return records


def _record(path: str, boxes: np.ndarray, labels: np.ndarray) -> sources.Record:
  return sources.Record(image_path=path, image_id=os.path.splitext(os.path.basename(path))[0],
                        boxes=boxes.astype(np.float32), labels=labels,
                        difficult=np.zeros(len(labels), bool), crowd=np.zeros(len(labels), bool),
                        area=np.zeros(len(labels), np.float32))


def _label_lines(path: str) -> list[tuple[int, str]]:
  """``(1-based line number, text)`` of the non-empty lines; none if there is no file."""
  if not os.path.isfile(path):
    return []
  with open(path) as f:
    return [(k + 1, line.strip()) for k, line in enumerate(f) if line.strip()]


def _parse_line(line: str, where: str, num_classes: int) -> tuple[int, np.ndarray]:
  """``(0-based class, normalized xyxy [4])`` of one label line."""
  fields = line.split()
  try:
    label, values = int(fields[0]), np.array([float(v) for v in fields[1:]])
  except ValueError as e:
    raise ValueError(f"{where}: expected 'class cx cy w h' numbers, got {line!r}") from e
  if not 0 <= label < num_classes:
    raise ValueError(f"{where}: class index {label} is not in 0..{num_classes - 1} (the "
                     f"{num_classes} class names)")
  if len(values) == 4:
    cx, cy, w, h = values
    return label, np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
  if len(values) >= 6 and len(values) % 2 == 0:  # A polygon: its extent.
    points = values.reshape(-1, 2)
    return label, np.concatenate([points.min(0), points.max(0)])
  raise ValueError(f"{where}: expected 'class cx cy w h' (or a polygon 'class x1 y1 x2 y2 ...'), "
                   f"got {len(fields)} fields: {line!r}")
