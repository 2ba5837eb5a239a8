"""A run's prior layout, stored in the workdir with the checkpoints, so that evaluation, detection
and export build the model with the priors it was trained with, whatever they were fitted to.

``priors.json``: ``{"spec": {<PriorSpec fields>}, "kmeans": {...} or null, "num_boxes": ...,
"mean_best_iou": ..., "replaced_mean_best_iou": ...}``. ``kmeans`` holds the
``config.priors.kmeans`` settings (``seed``, ``max_images``, ``iters``) of a layout fitted to the
training boxes (``ssd_jax.experiment.fit_priors``), null for a layout the config gives by rule
(the model's default, a preset, the linear rule); the last three fields, of a fitted layout only,
say how well it covers the training boxes' shapes (``priors.kmeans.mean_best_iou``) and how well
the layout it replaced did.
"""

import dataclasses
import json
import os
from typing import Any, Optional

from ssd_jax import priors as priors_lib

FILENAME = "priors.json"


@dataclasses.dataclass(frozen=True)
class RunPriors:
  """The prior layout of a run.

  Attributes:
    spec: the layout.
    kmeans: the ``config.priors.kmeans`` settings it was fitted with, defaults filled in; None
      for a layout given by the config alone.
    num_boxes: the training boxes it was fitted on (fitted layouts only).
    mean_best_iou: mean over those boxes of the best centred IoU of their ``(w, h)`` with the
      layout's per-cell box sizes (``priors.kmeans.mean_best_iou``; fitted layouts only).
    replaced_mean_best_iou: the same for the layout the fitted one replaces (same count).
  """
  spec: priors_lib.PriorSpec
  kmeans: Optional[dict[str, Any]] = None
  num_boxes: Optional[int] = None
  mean_best_iou: Optional[float] = None
  replaced_mean_best_iou: Optional[float] = None


def path(workdir: str) -> str:
  return os.path.join(workdir, FILENAME)


def _spec_to_json(spec: priors_lib.PriorSpec) -> dict[str, Any]:
  return {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}


def _spec_from_json(data: dict[str, Any]) -> priors_lib.PriorSpec:
  """The inverse of :func:`_spec_to_json`: JSON lists back to the spec's tuples."""
  as_tuple = lambda v: None if v is None else tuple(v)
  return priors_lib.PriorSpec(
      image_size=data["image_size"], feature_map_sizes=tuple(data["feature_map_sizes"]),
      steps=tuple(data["steps"]), min_sizes=tuple(data["min_sizes"]),
      max_sizes=as_tuple(data["max_sizes"]),
      aspect_ratios=tuple(tuple(r) for r in data["aspect_ratios"]), flip=data["flip"],
      clip=data["clip"], offset=data["offset"], layer_names=as_tuple(data["layer_names"]))


def load(workdir: str) -> Optional[RunPriors]:
  """The layout stored in ``workdir``, or None when there is none (a run trained before
  ``priors.json`` was written: its layout is its config's)."""
  file = path(workdir)
  if not os.path.isfile(file):
    return None
  with open(file) as f:
    data = json.load(f)
  return RunPriors(spec=_spec_from_json(data["spec"]), kmeans=data["kmeans"],
                   num_boxes=data["num_boxes"], mean_best_iou=data["mean_best_iou"],
                   replaced_mean_best_iou=data["replaced_mean_best_iou"])


def save_or_check(run_priors: RunPriors, workdir: str) -> None:
  """Writes ``run_priors`` to ``workdir``, or checks that it equals the one already there (a
  resumed run whose priors changed would train its heads against other boxes)."""
  file = path(workdir)
  if os.path.isfile(file):
    stored = load(workdir)
    if stored != run_priors:
      raise ValueError(f"{file} holds another prior layout than this run's: use a new "
                       "--workdir, or the config the run was trained with")
    return
  os.makedirs(workdir, exist_ok=True)
  # Written whole, then renamed: the other processes of a job may read it as they start.
  with open(file + ".tmp", "w") as f:
    json.dump({"spec": _spec_to_json(run_priors.spec), "kmeans": run_priors.kmeans,
               "num_boxes": run_priors.num_boxes, "mean_best_iou": run_priors.mean_best_iou,
               "replaced_mean_best_iou": run_priors.replaced_mean_best_iou}, f, indent=1)
  os.replace(file + ".tmp", file)
