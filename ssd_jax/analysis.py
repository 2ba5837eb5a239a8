"""Prior analysis: how well a default-box layout covers a dataset's boxes.

Typical use (a notebook or an ablation report)::

  gt = collect_boxes(ssd_jax.data.voc_directory(...), max_images=2000)
  cov = prior_coverage(gt, priors.SSD300_VOC, iou_threshold=0.5)
  print(format_markdown(coverage_table(cov, by="size")))

Priors fitted to the boxes' shapes (``gt.wh``) come from :mod:`ssd_jax.priors.kmeans`; their
coverage is measured here like any other layout's.

Only :func:`collect_boxes` touches a dataset; every statistic takes NumPy arrays (through
:class:`GroundTruthBoxes`), so nothing here imports TensorFlow.

Buckets: a box's size and shape buckets (``Coverage.size_bucket``, ``aspect_bucket``,
``coverage_table(by="size" | "aspect")``) are those of :mod:`ssd_jax.metrics`, which defines them
(its module docstring says why these edges), so a box lands in the same bucket here as in the
evaluation's ``ap_small`` ... and ``recall_ar_1to3`` ...:
  * size (:data:`ssd_jax.metrics.SIZE_NAMES`): COCO's ranges, small ``area < 32^2``, medium
    ``32^2 <= area < 96^2``, large ``area >= 96^2``, on the box area in pixels of the original
    image scaled to COCO's 640-px longer side. COCO's own evaluation uses the segmentation area;
    the box area used here is a little larger.
  * aspect (:data:`ssd_jax.metrics.ASPECT_NAMES`): ``w / h`` of the *normalized* box, i.e. as the
    network sees it after SSD's aspect-warping square resize (the frame the priors' ratios live
    in), around the paper's ratios {1/3, 1/2, 1, 2, 3} with edges at their geometric midpoints.
  A value on an edge goes to the bucket above it.
"""

import dataclasses
import functools
import warnings
from typing import Any, Iterable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ssd_jax import boxes as box_lib
from ssd_jax import metrics as metrics_lib
from ssd_jax import priors as prior_lib

# Slack on the [0, 1] range check of normalized boxes: tolerates rounding, catches pixel boxes.
_RANGE_TOL = 1e-3


@dataclasses.dataclass(frozen=True, eq=False)  # array fields: compare by identity
class GroundTruthBoxes:
  """The ground-truth boxes of a dataset split, flattened over images.

  Attributes:
    boxes: ``[N, 4]`` float32 normalized xyxy; every box has positive width and height.
    labels: ``[N]`` int32 class ids ``1..C`` (0 where unknown).
    image_index: ``[N]`` int32 index of the box's image in iteration order.
    image_hw: ``[N, 2]`` float32 ``(height, width)`` in pixels of the box's original image.
    difficult: ``[N]`` bool VOC difficult flag.
    crowd: ``[N]`` bool COCO iscrowd flag.
    class_names: optional names of classes ``1..C`` (``class_names[label - 1]``).
  """
  boxes: np.ndarray
  labels: np.ndarray
  image_index: np.ndarray
  image_hw: np.ndarray
  difficult: np.ndarray
  crowd: np.ndarray
  class_names: Optional[tuple[str, ...]] = None

  def __post_init__(self):
    n = len(self.boxes)
    fields = {"boxes": (np.float32, (n, 4)), "labels": (np.int32, (n,)),
              "image_index": (np.int32, (n,)), "image_hw": (np.float32, (n, 2)),
              "difficult": (bool, (n,)), "crowd": (bool, (n,))}
    for name, (dtype, shape) in fields.items():
      value = np.asarray(getattr(self, name), dtype)
      if value.shape != shape:
        raise ValueError(f"GroundTruthBoxes.{name} has shape {value.shape}, expected {shape}")
      object.__setattr__(self, name, value)
    _check_boxes(self.boxes, "GroundTruthBoxes.boxes")
    if not (np.isfinite(self.image_hw).all() and (self.image_hw > 0).all()):
      raise ValueError("GroundTruthBoxes.image_hw must hold finite positive pixel sizes")

  @classmethod
  def from_boxes(cls, boxes: np.ndarray, image_hw: Sequence[float] | np.ndarray,
                 labels: Optional[np.ndarray] = None) -> "GroundTruthBoxes":
    """Wraps a ``[N, 4]`` normalized xyxy array; ``image_hw`` is ``(h, w)`` or ``[N, 2]``."""
    boxes = np.asarray(boxes, np.float32)
    n = len(boxes)
    return cls(boxes=boxes,
               labels=np.zeros(n, np.int32) if labels is None else labels,
               image_index=np.zeros(n, np.int32),
               image_hw=np.broadcast_to(np.asarray(image_hw, np.float32), (n, 2)),
               difficult=np.zeros(n, bool), crowd=np.zeros(n, bool))

  def __len__(self) -> int:
    return len(self.boxes)

  @property
  def wh(self) -> np.ndarray:
    """``[N, 2]`` normalized ``(w, h)``."""
    return self.boxes[:, 2:] - self.boxes[:, :2]

  @property
  def area_pixels(self) -> np.ndarray:
    """``[N]`` box area in pixels of the original image."""
    wh = self.wh
    return wh[:, 0] * self.image_hw[:, 1] * wh[:, 1] * self.image_hw[:, 0]

  def select(self, mask: np.ndarray) -> "GroundTruthBoxes":
    """The boxes where ``mask`` (``[N]`` bool) is true, e.g. ``gt.select(~gt.crowd)``."""
    mask = np.asarray(mask, bool)
    if mask.shape != (len(self),):
      raise ValueError(f"select: mask has shape {mask.shape}, expected ({len(self)},)")
    return dataclasses.replace(
        self, **{f.name: getattr(self, f.name)[mask] for f in dataclasses.fields(self)
                 if f.name != "class_names"})


def _check_boxes(boxes: np.ndarray, where: str) -> None:
  """Raises ValueError unless ``boxes`` is ``[N, 4]`` finite normalized xyxy of positive size."""
  if boxes.ndim != 2 or boxes.shape[1] != 4:
    raise ValueError(f"{where} must be [N, 4] xyxy, got shape {boxes.shape}")
  bad = ~np.isfinite(boxes).all(1)
  if bad.any():
    raise ValueError(f"{where}: box {int(np.argmax(bad))} is not finite: {boxes[bad][0]}")
  bad = ((boxes[:, 2:] <= boxes[:, :2]).any(1) | (boxes < -_RANGE_TOL).any(1)
         | (boxes > 1 + _RANGE_TOL).any(1))
  if bad.any():
    raise ValueError(f"{where}: box {int(np.argmax(bad))} = {boxes[bad][0]} is not normalized "
                     "xyxy with xmin < xmax, ymin < ymax inside [0, 1]")


def collect_boxes(source: Any, max_images: Optional[int] = None) -> GroundTruthBoxes:
  """Reads every ground-truth box of a dataset, iterating it once.

  Args:
    source: an ``ssd_jax.data`` source (anything with ``as_dataset(shuffle=False)``), a
      ``tf.data.Dataset`` or any iterable of example dicts with ``image`` ``[H, W, 3]``,
      ``boxes`` ``[N, 4]`` normalized xyxy and ``labels`` ``[N]``; optional ``difficult`` and
      ``crowd`` ``[N]``. Rows with label 0 (padding) are dropped.
    max_images: stop after this many images (``None``: all).

  Returns:
    The boxes, with ``class_names`` from ``source.class_names`` when it has them. Boxes of zero
    width or height are dropped with a warning (they have no IoU with any prior).
  """
  examples: Iterable = source
  if hasattr(source, "as_dataset"):
    examples = source.as_dataset(shuffle=False)
  if hasattr(examples, "as_numpy_iterator"):
    examples = examples.as_numpy_iterator()
  parts = {k: [] for k in ("boxes", "labels", "image_index", "image_hw", "difficult", "crowd")}
  num_images = num_degenerate = 0
  for i, ex in enumerate(examples):
    if max_images is not None and i >= max_images:
      break
    missing = {"image", "boxes", "labels"} - set(ex)
    if missing:
      raise ValueError(f"collect_boxes: example {i} lacks {sorted(missing)}")
    b = np.asarray(ex["boxes"], np.float32).reshape(-1, 4)
    n = len(b)
    labels = np.asarray(ex["labels"]).reshape(-1)
    if len(labels) != n:
      raise ValueError(f"collect_boxes: example {i} has {n} boxes but {len(labels)} labels")
    keep = labels > 0
    if not np.isfinite(b[keep]).all():
      raise ValueError(f"collect_boxes: example {i} (image_id {ex.get('image_id')}) has "
                       "non-finite boxes")
    degenerate = keep & (b[:, 2:] <= b[:, :2]).any(1)
    num_degenerate += int(degenerate.sum())
    keep &= ~degenerate
    h, w = np.shape(ex["image"])[:2]
    parts["boxes"].append(b[keep])
    parts["labels"].append(labels[keep])
    parts["image_index"].append(np.full(keep.sum(), i))
    parts["image_hw"].append(np.tile([[h, w]], (keep.sum(), 1)))
    for flag in ("difficult", "crowd"):
      parts[flag].append(np.asarray(ex.get(flag, np.zeros(n, bool)), bool).reshape(n)[keep])
    num_images += 1
  if num_degenerate:
    warnings.warn(f"collect_boxes: dropped {num_degenerate} boxes of zero width or height")
  if num_images == 0:
    raise ValueError("collect_boxes: the source yielded no examples")
  names = getattr(source, "class_names", None)
  return GroundTruthBoxes(**{k: np.concatenate(v) for k, v in parts.items()},
                          class_names=tuple(names) if names is not None else None)


# ------------------------------------------------------------------------------------------------
# Coverage of the ground truth by the priors.
# ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)  # array fields: compare by identity
class Coverage:
  """Per-box results of :func:`prior_coverage` (N boxes, L prior layers).

  Attributes:
    best_iou: ``[N]`` float32 highest IoU of the box with any prior.
    best_prior: ``[N]`` int32 index of that prior (the first one on ties).
    best_layer: ``[N]`` int32 layer of that prior.
    positives_per_layer: ``[N, L]`` int32 priors of each layer with IoU >= ``iou_threshold``.
      These are candidate positives: matching later gives a prior shared by two boxes to one.
    size_bucket, aspect_bucket: ``[N]`` int32 indices into :data:`ssd_jax.metrics.SIZE_NAMES` /
      :data:`ssd_jax.metrics.ASPECT_NAMES` (see the module docstring).
    labels: ``[N]`` int32 class ids.
    iou_threshold: the threshold used.
    layer_names: ``L`` names of the prior layers.
    class_names: optional names of classes ``1..C``.
  """
  best_iou: np.ndarray
  best_prior: np.ndarray
  best_layer: np.ndarray
  positives_per_layer: np.ndarray
  size_bucket: np.ndarray
  aspect_bucket: np.ndarray
  labels: np.ndarray
  iou_threshold: float
  layer_names: tuple[str, ...]
  class_names: Optional[tuple[str, ...]] = None

  @property
  def num_positive(self) -> np.ndarray:
    """``[N]`` priors with IoU >= threshold, all layers."""
    return self.positives_per_layer.sum(1)

  @property
  def recall(self) -> float:
    """Fraction of boxes whose best prior reaches the threshold."""
    return float(np.mean(self.best_iou >= self.iou_threshold))


@functools.partial(jax.jit, static_argnames=("layer_bounds",))
def _coverage_chunk(gt_xyxy, priors_xyxy, threshold, layer_bounds):
  """``[C, 4]`` boxes x ``[P, 4]`` priors -> best IoU, best prior ``[C]``, positives ``[C, L]``."""
  ious = box_lib.iou(gt_xyxy, priors_xyxy)  # [C, P]
  positive = ious >= threshold
  # The layer loop is over a handful of static slices, not over boxes or priors.
  per_layer = jnp.stack([positive[:, a:b].sum(1) for a, b in
                         zip(layer_bounds[:-1], layer_bounds[1:])], axis=1)
  return ious.max(1), jnp.argmax(ious, axis=1), per_layer


def prior_coverage(gt: GroundTruthBoxes | np.ndarray,
                   priors: prior_lib.PriorSpec | np.ndarray,
                   iou_threshold: float = 0.5, *,
                   image_hw: Optional[Sequence[float]] = None,
                   chunk_size: int = 256) -> Coverage:
  """Best IoU of every ground-truth box with the priors, and its candidate positives.

  The IoU matrix is computed under jit in chunks of ``chunk_size`` boxes, so memory stays at a
  few ``[chunk_size, P]`` arrays (10k boxes x 24564 SSD512 priors is fine).

  Args:
    gt: the boxes, or a ``[N, 4]`` normalized xyxy array.
    priors: a :class:`~ssd_jax.priors.PriorSpec` (one layer per source map, named by its
      ``layer_names`` or ``layer0..``) or a ``[P, 4]`` normalized cxcywh array (one layer,
      ``"priors"``).
    iou_threshold: a box is covered when its best IoU is >= this (SSD's 0.5).
    image_hw: for an array ``gt``, the ``(h, w)`` original image size in pixels used for the size
      buckets (of which only its shape matters: areas are scaled to COCO's 640-px longer side);
      defaults to the spec's square ``image_size`` (i.e. the network input).
    chunk_size: boxes per jit call.
  """
  if not 0 < iou_threshold <= 1:
    raise ValueError(f"prior_coverage: iou_threshold must be in (0, 1], got {iou_threshold}")
  if chunk_size < 1:
    raise ValueError(f"prior_coverage: chunk_size must be >= 1, got {chunk_size}")
  if isinstance(priors, prior_lib.PriorSpec):
    priors_cxcywh = prior_lib.generate(priors)
    layer_sizes = priors.boxes_per_layer
    layer_names = priors.layer_names or tuple(f"layer{k}" for k in range(priors.num_layers))
  else:
    priors_cxcywh = np.asarray(priors, np.float32)
    if priors_cxcywh.ndim != 2 or priors_cxcywh.shape[1] != 4 or not len(priors_cxcywh):
      raise ValueError(f"prior_coverage: priors must be [P, 4] cxcywh with P > 0, got shape "
                       f"{priors_cxcywh.shape}")
    if not np.isfinite(priors_cxcywh).all():
      raise ValueError("prior_coverage: priors contain non-finite values")
    layer_sizes, layer_names = (len(priors_cxcywh),), ("priors",)
  if not isinstance(gt, GroundTruthBoxes):
    if image_hw is None:
      if not isinstance(priors, prior_lib.PriorSpec):
        raise ValueError("prior_coverage: pass image_hw for an array of boxes and array priors")
      image_hw = (priors.image_size, priors.image_size)
    gt = GroundTruthBoxes.from_boxes(gt, image_hw)
  if not len(gt):
    raise ValueError("prior_coverage: no ground-truth boxes")

  priors_xyxy = box_lib.cxcywh_to_xyxy(jnp.asarray(priors_cxcywh))
  bounds = tuple(int(b) for b in np.cumsum((0,) + tuple(layer_sizes)))
  n = len(gt)
  # Pad to a whole number of chunks with zero boxes (IoU 0) so that jit compiles once.
  padded = np.zeros((-(-n // chunk_size) * chunk_size, 4), np.float32)
  padded[:n] = gt.boxes
  results = [_coverage_chunk(jnp.asarray(padded[i:i + chunk_size]), priors_xyxy,
                             jnp.float32(iou_threshold), bounds)
             for i in range(0, len(padded), chunk_size)]
  best_iou, best_prior, per_layer = (np.concatenate([np.asarray(r[j]) for r in results])[:n]
                                     for j in range(3))
  wh = gt.wh
  return Coverage(
      best_iou=best_iou.astype(np.float32),
      best_prior=best_prior.astype(np.int32),
      best_layer=(np.searchsorted(bounds, best_prior, side="right") - 1).astype(np.int32),
      positives_per_layer=per_layer.astype(np.int32),
      size_bucket=metrics_lib.size_buckets(
          gt.area_pixels * metrics_lib.coco_area_scale(gt.image_hw)),
      aspect_bucket=metrics_lib.aspect_buckets(wh[:, 0] / wh[:, 1]),
      labels=gt.labels, iou_threshold=float(iou_threshold), layer_names=tuple(layer_names),
      class_names=gt.class_names)


def _group_row(cov: Coverage, name: str, mask: np.ndarray) -> dict[str, Any]:
  n = int(mask.sum())
  best, npos = cov.best_iou[mask], cov.num_positive[mask]
  stat = lambda f, x: float(f(x)) if n else float("nan")
  return {"group": name, "boxes": n, "share": n / len(cov.best_iou),
          "recall": stat(np.mean, best >= cov.iou_threshold),
          "mean_best_iou": stat(np.mean, best), "median_best_iou": stat(np.median, best),
          "mean_positives": stat(np.mean, npos), "median_positives": stat(np.median, npos)}


def coverage_table(cov: Coverage, by: str = "size") -> list[dict[str, Any]]:
  """Summary rows of a :class:`Coverage`, one per group, then an ``"all"`` row.

  Args:
    cov: the per-box results.
    by: ``"size"`` (COCO area) or ``"aspect"`` (w/h), both bucketed as the module docstring
      says, ``"layer"`` (layer of the best prior) or ``"class"``.

  Returns:
    Dicts with ``group``, ``boxes``, ``share`` (of all boxes), ``recall`` (best IoU >=
    threshold), ``mean_best_iou``, ``median_best_iou``, ``mean_positives``,
    ``median_positives``. ``by="layer"`` adds ``positives_from_layer``: the mean number of
    positive priors per box (over all boxes) that this layer contributes. Statistics of an empty
    group are NaN.
  """
  if by == "size":
    groups = [(name, cov.size_bucket == i) for i, name in enumerate(metrics_lib.SIZE_NAMES)]
  elif by == "aspect":
    groups = [(name, cov.aspect_bucket == i) for i, name in enumerate(metrics_lib.ASPECT_NAMES)]
  elif by == "layer":
    groups = [(name, cov.best_layer == i) for i, name in enumerate(cov.layer_names)]
  elif by == "class":
    names = cov.class_names or ()
    groups = [(names[c - 1] if 0 < c <= len(names) else str(c), cov.labels == c)
              for c in np.unique(cov.labels)]
  else:
    raise ValueError(f"coverage_table: by must be size, aspect, layer or class, got {by!r}")
  rows = [_group_row(cov, name, mask) for name, mask in groups]
  rows.append(_group_row(cov, "all", np.ones_like(cov.best_iou, bool)))
  if by == "layer":
    from_layer = cov.positives_per_layer.mean(0)
    for row, value in zip(rows, list(from_layer) + [from_layer.sum()]):
      row["positives_from_layer"] = float(value)
  return rows


def format_markdown(rows: Sequence[dict[str, Any]], digits: int = 3) -> str:
  """A Markdown table of :func:`coverage_table` rows (floats rounded to ``digits``)."""
  if not rows:
    raise ValueError("format_markdown: no rows")
  keys = list(rows[0])
  fmt = lambda v: f"{v:.{digits}f}" if isinstance(v, float) else str(v)
  lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
  lines += ["| " + " | ".join(fmt(r[k]) for k in keys) + " |" for r in rows]
  return "\n".join(lines)
