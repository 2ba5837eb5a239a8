"""A run's label map: the class names of labels ``1..C``, stored in the workdir with the
checkpoints, so that evaluation, detection and export never need the training data again.

``label_map.json``: ``{"class_names": [...], "category_ids": [...] or null}``; ``category_ids``
are the dataset's own ids of labels ``1..C`` (COCO category ids, for exporting detections in
COCO's format).
"""

import dataclasses
import json
import os
from typing import Optional

from ssd_jax.data import sources

FILENAME = "label_map.json"


@dataclasses.dataclass(frozen=True)
class LabelMap:
  class_names: tuple[str, ...]
  category_ids: Optional[tuple[int, ...]] = None

  def __post_init__(self):
    if not self.class_names:
      raise ValueError("a label map needs at least one class")
    if len(set(self.class_names)) != len(self.class_names):
      raise ValueError(f"class names repeat: {list(self.class_names)}")
    if self.category_ids is not None and len(self.category_ids) != len(self.class_names):
      raise ValueError(f"{len(self.category_ids)} category ids for "
                       f"{len(self.class_names)} classes")

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  @classmethod
  def from_source(cls, source: sources.Source) -> "LabelMap":
    ids = source.category_ids
    return cls(tuple(source.class_names), None if ids is None else tuple(int(i) for i in ids))


def path(workdir: str) -> str:
  return os.path.join(workdir, FILENAME)


def load(workdir: str) -> LabelMap:
  """The label map stored in ``workdir``; FileNotFoundError naming it when there is none."""
  file = path(workdir)
  if not os.path.isfile(file):
    raise FileNotFoundError(f"{file} not found: {workdir} is not the workdir of a training run "
                            "(training writes the label map there before its first step)")
  with open(file) as f:
    data = json.load(f)
  ids = data.get("category_ids")
  return LabelMap(tuple(data["class_names"]), None if ids is None else tuple(ids))


def save_or_check(label_map: LabelMap, workdir: str) -> None:
  """Writes ``label_map`` to ``workdir``, or checks that it equals the one already there (a
  resumed run whose dataset now has other classes would silently relabel its outputs)."""
  file = path(workdir)
  if os.path.isfile(file):
    stored = load(workdir)
    if stored != label_map:
      raise ValueError(f"{file} holds classes {list(stored.class_names)}, but the training data "
                       f"now has {list(label_map.class_names)}: use a new --workdir, or the "
                       "dataset the run was trained on")
    return
  os.makedirs(workdir, exist_ok=True)
  with open(file, "w") as f:
    json.dump({"class_names": list(label_map.class_names),
               "category_ids": None if label_map.category_ids is None
               else list(label_map.category_ids)}, f, indent=1)

