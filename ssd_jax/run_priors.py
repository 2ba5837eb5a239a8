"""A run's priors: how its config chooses its prior layout, and that layout stored in its workdir.

A config gives a layout by rule (:func:`prior_spec`: the model's default, a preset of
``priors.PRESETS``, or the paper's linear rule of ``config.priors``), or, with
``config.priors.kmeans`` (:func:`kmeans_settings`), one fitted to the training boxes
(:func:`fit`). A training run gets its layout from :func:`fit_or_load` and stores it in its
workdir with the checkpoints (:func:`save_or_check`), so that evaluation, detection and export
build the model with the priors it was trained with, whatever they were fitted to
(:func:`load`, which checks the stored layout against the config). ``ssd_jax.experiment``, the
composition root, calls this module to build a config's model.

``priors.json``: ``{"spec": {<PriorSpec fields>}, "kmeans": {...} or null, "num_boxes": ...,
"mean_best_iou": ..., "replaced_mean_best_iou": ...}``. ``kmeans`` holds the
``config.priors.kmeans`` settings (``seed``, ``max_images``, ``iters``) of a layout fitted to the
training boxes (:func:`fit`), null for a layout the config gives by rule (the model's default, a
preset, the linear rule); the last three fields, of a fitted layout only, say how well it covers
the training boxes' shapes (``priors.kmeans.mean_best_iou``) and how well the layout it replaced
did.
"""

import dataclasses
import json
import os
from typing import Any, Mapping, Optional

import ml_collections
import numpy as np

from ssd_jax import analysis, models
from ssd_jax import priors as priors_lib

Config = ml_collections.ConfigDict

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


# ---------------------------------------------------------------------------------------------
# The config's layout, fitted or by rule, and checking a stored one.
# ---------------------------------------------------------------------------------------------
def prior_spec(config: Config) -> priors_lib.PriorSpec:
  """The model's default layout, a preset, or the paper's linear rule.

  ``config.model.image_size`` (None = the model's own) sets the input side of models whose
  backbone follows it (``ssd_tiny``); the default layout and the ablation below are for that
  side. ``config.model.prior_preset`` names one of ``priors.PRESETS`` (e.g. ``'SSD300_COCO'``).
  ``config.priors`` (for ablations): ``layers`` (source layer names, a subset of the model's
  default ``layer_names``, None = all), ``s_min``, ``s_max``, ``first_scale`` (None = pure linear
  rule) and ``aspect_ratios`` (one tuple for all layers or one per layer; None = the model's).

  ``config.priors.kmeans`` (None = off; a ConfigDict of :data:`KMEANS_DEFAULTS`' fields, ``{}``
  for the defaults) replaces that layout by one fitted to the training boxes (:func:`fit`) with
  the same source layers, cell centres and number of boxes per cell on every layer, so the heads
  and the prior count are the same; with no other ``config.priors`` field it replaces the model's
  default (or ``prior_preset``). Such a layout depends on the data, so this function raises
  ValueError for it: a training run fits it at its start (:func:`fit_or_load`) and saves it in
  its workdir, where a trained run's model reads it (:func:`load`). :func:`rule_prior_spec` gives
  the layout it replaces.
  """
  if kmeans_settings(config) is not None:
    raise ValueError("config.priors.kmeans: k-means priors are fitted to the training boxes, so "
                     "the config alone does not give them: a run's come from its training start "
                     "(run_priors.fit_or_load) or its workdir (run_priors.load)")
  return rule_prior_spec(config)


def rule_prior_spec(config: Config) -> priors_lib.PriorSpec:
  """The layout :func:`prior_spec` describes, ignoring ``config.priors.kmeans``: with k-means on,
  the layout the fitted one replaces (its layers, centres and counts)."""
  cfg, preset = config.get("priors"), config.model.get("prior_preset")
  base = models.backbone_entry(config.model.name).default_priors(config.model.get("image_size"))
  linear_rule = bool(cfg) and bool(set(cfg.keys()) - {"kmeans"})
  if linear_rule and preset:
    raise ValueError("set config.priors (other than kmeans) or config.model.prior_preset, not "
                     "both")
  if preset:
    if preset not in priors_lib.PRESETS:
      raise ValueError(f"config.model.prior_preset={preset!r}; valid: {list(priors_lib.PRESETS)}")
    spec = priors_lib.PRESETS[preset]
    if spec.layer_names != base.layer_names:
      raise ValueError(f"config.model.prior_preset={preset!r} is a layout of the source layers "
                       f"{spec.layer_names}, model {config.model.name!r} has "
                       f"{base.layer_names}: set --config.model.prior_preset= (none)")
    return spec
  if not linear_rule:
    return base
  names = tuple(cfg.get("layers") or base.layer_names)
  unknown = [n for n in names if n not in base.layer_names]
  if unknown:
    raise ValueError(f"config.priors.layers: {unknown} are not source layers of "
                     f"{config.model.name} ({base.layer_names})")
  sizes = [base.feature_map_sizes[base.layer_names.index(n)] for n in names]
  ratios = cfg.get("aspect_ratios")
  if ratios is None:  # the model's own ratios of the kept layers
    ratios = [base.aspect_ratios[base.layer_names.index(n)] for n in names]
  return priors_lib.from_linear_scales(sizes, cfg.s_min, cfg.s_max, ratios,
                                       cfg.get("first_scale"), image_size=base.image_size,
                                       layer_names=names)


# config.priors.kmeans fields: the k-means seed, the training images whose boxes it clusters
# (None = all), and its maximum Lloyd iterations (priors.kmeans.fit_anchors).
KMEANS_DEFAULTS = {"seed": 0, "max_images": None, "iters": 300}


def kmeans_settings(config: Config) -> Optional[dict[str, Any]]:
  """``config.priors.kmeans`` with :data:`KMEANS_DEFAULTS` filled in, or None when it is None
  (off). Raises ValueError naming a bad field."""
  value = (config.get("priors") or {}).get("kmeans")
  if value is None:
    return None
  if not isinstance(value, (Mapping, Config)):
    raise ValueError(f"config.priors.kmeans must be None or a ConfigDict with fields of "
                     f"{sorted(KMEANS_DEFAULTS)}, got {value!r}")
  unknown = sorted(set(value.keys()) - set(KMEANS_DEFAULTS))
  if unknown:
    raise ValueError(f"config.priors.kmeans has no fields {unknown}; valid: "
                     f"{sorted(KMEANS_DEFAULTS)}")
  settings = {**KMEANS_DEFAULTS, **dict(value.items())}
  is_int = lambda v: isinstance(v, int) and not isinstance(v, bool)
  for name, lowest in (("seed", 0), ("max_images", 1), ("iters", 1)):
    v = settings[name]
    if not (v is None and name == "max_images") and not (is_int(v) and v >= lowest):
      raise ValueError(f"config.priors.kmeans.{name} must be an integer >= {lowest}"
                       f"{' or None' if name == 'max_images' else ''}, got {v!r}")
  return settings


def fit(config: Config, source: Any) -> RunPriors:
  """The k-means layout of ``config.priors.kmeans``, fitted to ``source``'s boxes.

  The boxes' normalized ``(w, h)`` (as the network sees them after the square resize; crowd boxes
  left out, as matching ignores them) of the first ``max_images`` images of ``source`` (a
  training source, or anything ``analysis.collect_boxes`` reads) are clustered with ``1 - IoU``
  into ``sum(B_k)`` anchors, ``B_k`` the boxes per cell of layer ``k`` of the layout replaced
  (:func:`rule_prior_spec`); layer ``k`` gets ``B_k`` of them, the smallest going to the finest
  map, exactly one box per anchor (``priors.kmeans.spec_from_anchors(keep_counts=True)``), at
  the replaced layout's cell centres.
  """
  settings = kmeans_settings(config)
  if settings is None:
    raise ValueError("run_priors.fit: config.priors.kmeans is not set")
  replaced = rule_prior_spec(config)
  gt = analysis.collect_boxes(source, settings["max_images"])
  wh = gt.select(~gt.crowd).wh
  if not len(wh):
    raise ValueError("config.priors.kmeans: the training data has no boxes to fit priors to")
  try:
    anchors = priors_lib.kmeans.fit_anchors(wh, sum(replaced.boxes_per_cell),
                                            seed=settings["seed"], iters=settings["iters"])
  except ValueError as e:
    raise ValueError(f"config.priors.kmeans ({len(wh)} training boxes, "
                     f"{sum(replaced.boxes_per_cell)} priors per location of all layers): "
                     f"{e}") from e
  fitted = priors_lib.kmeans.spec_from_anchors(
      anchors, replaced.feature_map_sizes, image_size=replaced.image_size,
      layer_names=replaced.layer_names, anchors_per_layer=replaced.boxes_per_cell,
      clip=replaced.clip, keep_counts=True)
  spec = dataclasses.replace(fitted, steps=replaced.steps, offset=replaced.offset)
  coverage = lambda s: priors_lib.kmeans.mean_best_iou(
      wh, np.concatenate(priors_lib.kmeans.cell_box_sizes(s)))
  return RunPriors(spec=spec, kmeans=settings, num_boxes=len(wh), mean_best_iou=coverage(spec),
                   replaced_mean_best_iou=coverage(replaced))


def _check_stored(config: Config, stored: RunPriors, workdir: str) -> None:
  """Raises ValueError unless ``config`` describes the layout stored in ``workdir``."""
  file, settings = path(workdir), kmeans_settings(config)
  fix = "pass the config (and overrides) the run was trained with, or use a new --workdir"
  if settings != stored.kmeans:
    was = (f"fitted with config.priors.kmeans={stored.kmeans}" if stored.kmeans
           else "given by the config (config.priors.kmeans None)")
    raise ValueError(f"{file}: the run's priors were {was}, the config has "
                     f"config.priors.kmeans={settings}: {fix}")
  replaced = rule_prior_spec(config)
  if settings is None and stored.spec != replaced:
    raise ValueError(f"{file}: the run was trained with other priors than the config gives "
                     f"({stored.spec} vs {replaced}): {fix}")
  shape = lambda s: (s.image_size, s.feature_map_sizes, s.boxes_per_cell, s.layer_names)
  if settings is not None and shape(stored.spec) != shape(replaced):
    raise ValueError(f"{file}: the run's k-means priors replaced a layout of (image size, "
                     f"maps, boxes per cell, layers) {shape(stored.spec)}, the config's is "
                     f"{shape(replaced)}: {fix}")


def fit_or_load(config: Config, train_source: Any, workdir: Optional[str] = None) -> RunPriors:
  """The layout a training run trains with: the one in ``workdir``'s ``priors.json`` if it has
  one (a resumed run: checked against ``config``, not refitted), else :func:`prior_spec`'s, or
  with ``config.priors.kmeans`` one fitted to ``train_source`` (:func:`fit`)."""
  stored = read(workdir) if workdir else None
  if stored is not None:
    _check_stored(config, stored, workdir)
    return stored
  if kmeans_settings(config) is None:
    return RunPriors(spec=prior_spec(config))
  return fit(config, train_source)


def load(config: Config, workdir: str) -> priors_lib.PriorSpec:
  """The layout of the run trained with ``config`` in ``workdir``: its ``priors.json``'s,
  checked against ``config``; a run trained before that file existed has its config's.

  Raises:
    FileNotFoundError: ``config.priors.kmeans`` is set but ``workdir`` holds no fitted layout.
    ValueError: the stored layout is not the one ``config`` describes.
  """
  stored = read(workdir)
  if stored is None:
    if kmeans_settings(config) is not None:
      raise FileNotFoundError(
          f"{path(workdir)} not found: config.priors.kmeans is set, and a run's k-means priors "
          f"are fitted at its training start and saved there; is {workdir} a run trained with "
          "this config?")
    return prior_spec(config)
  _check_stored(config, stored, workdir)
  return stored.spec


# ---------------------------------------------------------------------------------------------
# The workdir's priors.json.
# ---------------------------------------------------------------------------------------------
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


def read(workdir: str) -> Optional[RunPriors]:
  """The layout stored in ``workdir``, or None when there is none (a run trained before
  ``priors.json`` was written: its layout is its config's). Unchecked: :func:`load` checks it
  against a config."""
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
    stored = read(workdir)
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
