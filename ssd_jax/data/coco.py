"""COCO-style JSON annotations (``images``, ``annotations``, ``categories``) + an image folder."""

import collections
import json
import math
import os
from typing import Any, Sequence

import numpy as np

from ssd_jax.data import sources


def coco_json(annotation_file: str, image_dir: str,
              class_names: Sequence[str] | None = None) -> sources.RecordSource:
  """A detection dataset described by a COCO-format JSON file.

  Examples follow the order of the ``images`` list, objects the annotation ``id`` order. Images
  without annotations are kept (empty boxes), so an ``image_info`` file without ``annotations``
  gives an unlabelled set. Categories become contiguous labels ``1..C`` in increasing category-id
  order (COCO's 80 ids 1..90 -> labels 1..80). ``bbox`` ``[x, y, w, h]`` in pixels becomes
  normalized xyxy ``(x / W, y / H, (x + w) / W, (y + h) / H)`` with the image's
  ``width``/``height``; ``iscrowd`` becomes ``crowd``; ``area`` (pixels; the segmentation area in
  COCO itself) is kept as ``area``, and an annotation without one gets its box's ``w * h`` (after
  clipping to the image).

  Args:
    annotation_file: path of the JSON file.
    image_dir: folder holding the images' ``file_name``.
    class_names: if given, the label order: category ``name`` s are looked up in it (label ``k`` is
      ``class_names[k - 1]``); if None, the category names in increasing id order.

  Returns:
    A source of examples whose ``image_id`` is the decimal image id (e.g. ``'397133'``) and whose
    ``category_ids`` are the category ids of labels ``1..C`` (None if a class has no category).

  Raises:
    ValueError: the file is missing or not valid JSON, lacks ``images``/``categories`` or an
      image's ``id``/``file_name``/positive ``width``/``height``; an annotation refers to an
      unknown image or category, has no 4-number ``bbox`` or an ``area`` that is not a finite
      number ``>= 0``; a category name is not in ``class_names`` (each message names the file).
      Bad boxes are dropped or clipped with a warning (see ``sources.normalize_pixel_boxes``).
  """
  try:
    with open(annotation_file) as f:
      data = json.load(f)
  except (OSError, ValueError) as e:  # json.JSONDecodeError is a ValueError.
    raise ValueError(f"{annotation_file}: cannot parse COCO annotation JSON: {e}") from e
  if not isinstance(data, dict) or "images" not in data or "categories" not in data:
    raise ValueError(f"{annotation_file}: not a COCO detection file (needs 'images' and "
                     "'categories')")

  for c in data["categories"]:
    if "id" not in c or "name" not in c:
      raise ValueError(f"{annotation_file}: category entry {c} needs an 'id' and a 'name'")
  categories = sorted(data["categories"], key=lambda c: c["id"])
  if class_names is None:
    class_names = [c["name"] for c in categories]
  known = {name: k + 1 for k, name in enumerate(class_names)}
  category_labels, category_names = {}, {}
  for c in categories:
    if c["name"] not in known:
      raise ValueError(f"{annotation_file}: category {c['id']} has unknown class {c['name']!r}; "
                       f"known classes: {list(class_names)}")
    category_labels[c["id"]], category_names[c["id"]] = known[c["name"]], c["name"]

  images = data["images"]
  image_ids = {_image_field(image, "id", annotation_file) for image in images}
  per_image = collections.defaultdict(list)
  for ann in data.get("annotations", []):
    if ann.get("image_id") not in image_ids:
      raise ValueError(f"{annotation_file}: annotation {ann.get('id')} refers to unknown image "
                       f"{ann.get('image_id')!r}")
    if ann.get("category_id") not in category_labels:
      raise ValueError(f"{annotation_file}: annotation {ann.get('id')} refers to unknown "
                       f"category {ann.get('category_id')!r}")
    per_image[ann["image_id"]].append(ann)

  issues = sources.AnnotationIssues()
  records = [_record(image, sorted(per_image[image["id"]], key=lambda a: a.get("id", 0)),
                     image_dir, category_labels, category_names, annotation_file, issues)
             for image in images]
  issues.summarize(annotation_file)
  source = sources.RecordSource(records, class_names)
  # Label k's category id, for writing detections back in the file's own ids.
  by_name = {c["name"]: c["id"] for c in categories}
  if all(name in by_name for name in class_names):
    source.category_ids = [by_name[name] for name in class_names]
  return source


def _image_field(image: dict[str, Any], key: str, annotation_file: str) -> Any:
  if key not in image:
    raise ValueError(f"{annotation_file}: image entry {image} has no {key!r}")
  return image[key]


def _record(image: dict[str, Any], anns: list[dict[str, Any]], image_dir: str,
            category_labels: dict[int, int], category_names: dict[int, str],
            annotation_file: str, issues: sources.AnnotationIssues) -> sources.Record:
  """One ``images`` entry and its annotations -> ``Record``."""
  file_name = _image_field(image, "file_name", annotation_file)
  width, height = image.get("width"), image.get("height")
  if not (isinstance(width, (int, float)) and isinstance(height, (int, float))
          and width > 0 and height > 0):
    raise ValueError(f"{annotation_file}: image {image['id']} ({file_name}) needs a positive "
                     f"'width' and 'height', got {width!r}x{height!r}")
  boxes, names = [], []
  for ann in anns:
    bbox = ann.get("bbox")
    name = f"annotation {ann.get('id')} ({category_names[ann['category_id']]!r})"
    if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4
            and all(isinstance(v, (int, float)) for v in bbox)):
      raise ValueError(f"{annotation_file}: {name} of image {file_name} needs a 'bbox' of 4 "
                       f"numbers, got {bbox!r}")
    area = ann.get("area")
    if area is not None and not (isinstance(area, (int, float)) and math.isfinite(area)
                                 and area >= 0):
      raise ValueError(f"{annotation_file}: {name} of image {file_name} has 'area' {area!r}; "
                       "expected a finite number >= 0 (or no 'area')")
    x, y, w, h = bbox
    boxes.append([x, y, x + w, y + h])
    names.append(name)
  pixel_boxes = np.array(boxes, np.float64).reshape(-1, 4)
  normalized, keep = sources.normalize_pixel_boxes(
      pixel_boxes, width, height, f"{annotation_file} (image {file_name})", names, issues)
  box_areas = sources.pixel_box_areas(pixel_boxes, width, height)
  areas = np.array([box_area if ann.get("area") is None else ann["area"]
                    for ann, box_area in zip(anns, box_areas)], np.float32).reshape(-1)
  return sources.Record(
      image_path=os.path.join(image_dir, file_name), image_id=str(image["id"]),
      boxes=normalized,
      labels=np.array([category_labels[a["category_id"]] for a in anns], np.int32)[keep],
      difficult=np.zeros(len(normalized), bool),
      crowd=np.array([bool(a.get("iscrowd", 0)) for a in anns], bool)[keep],
      area=areas[keep])
