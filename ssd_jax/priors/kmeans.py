"""Data-driven priors: k-means on the training boxes' shapes with the ``1 - IoU`` distance.

YOLOv2's anchor clustering (Redmon & Farhadi 2017), mapped onto an SSD :class:`PriorSpec`::

  gt = analysis.collect_boxes(source)
  anchors = priors.kmeans.fit_anchors(gt.wh, k=12, seed=0)  # [12, 2] (w, h), ascending area
  spec = priors.kmeans.spec_from_anchors(anchors, feature_map_sizes=(38, 19, 10, 5, 3, 1))
  priors.kmeans.mean_best_iou(gt.wh, np.concatenate(priors.kmeans.cell_box_sizes(spec)))

Every shape is a normalized ``(w, h)``: a fraction of the (square-resized) input side. Pure NumPy,
like the rest of :mod:`ssd_jax.priors`.
"""

import dataclasses
import math
from typing import Optional, Sequence

import numpy as np

# The package imports this module after defining these, so the names already exist.
from ssd_jax.priors import PriorSpec, generate


def centered_iou(wh_a: np.ndarray, wh_b: np.ndarray) -> np.ndarray:
  """IoU of boxes sharing one centre: ``[N, 2]`` x ``[K, 2]`` ``(w, h)`` -> ``[N, K]``."""
  wh_a, wh_b = np.asarray(wh_a, np.float64), np.asarray(wh_b, np.float64)
  inter = (np.minimum(wh_a[:, None, 0], wh_b[None, :, 0])
           * np.minimum(wh_a[:, None, 1], wh_b[None, :, 1]))
  union = (wh_a[:, 0] * wh_a[:, 1])[:, None] + (wh_b[:, 0] * wh_b[:, 1])[None, :] - inter
  return inter / union


def mean_best_iou(boxes_wh: np.ndarray, anchors_wh: np.ndarray) -> float:
  """YOLOv2's "Avg IOU": mean over boxes of the best centred IoU with any anchor."""
  boxes_wh = _check_wh(boxes_wh, "mean_best_iou: boxes_wh")
  anchors_wh = _check_wh(anchors_wh, "mean_best_iou: anchors_wh")
  return float(centered_iou(boxes_wh, anchors_wh).max(1).mean())


def _check_wh(wh: np.ndarray, where: str) -> np.ndarray:
  wh = np.asarray(wh, np.float64)
  if wh.ndim != 2 or wh.shape[1] != 2 or not len(wh):
    raise ValueError(f"{where} must be a non-empty [N, 2] array of (w, h), got shape {wh.shape}")
  bad = ~(np.isfinite(wh).all(1) & (wh > 0).all(1))
  if bad.any():
    raise ValueError(f"{where}: row {int(np.argmax(bad))} = {wh[bad][0]} is not a finite "
                     "positive (w, h)")
  return wh


def fit_anchors(boxes_wh: np.ndarray, k: int, seed: int = 0, iters: int = 300,
                init: str = "kmeans++") -> np.ndarray:
  """Clusters box shapes with the ``d = 1 - IoU`` distance of boxes aligned at a common centre.

  Lloyd iterations: assign every box to its nearest centroid, move each centroid to the mean
  ``(w, h)`` of its boxes, stop when the assignment no longer changes (or after ``iters``). A
  cluster that empties is re-seeded at the box farthest from its own centroid.

  Args:
    boxes_wh: ``[N, 2]`` normalized ``(w, h)`` (e.g. ``ssd_jax.analysis.GroundTruthBoxes.wh``).
    k: number of clusters, ``1 <= k <=`` number of distinct shapes.
    seed: seeds the initialization.
    iters: maximum Lloyd iterations.
    init: ``"kmeans++"`` (sample ``d^2``-proportionally) or ``"random"`` (k distinct boxes).

  Returns:
    ``[k, 2]`` float32 centroids ``(w, h)``, sorted by area (ascending).
  """
  wh = _check_wh(boxes_wh, "fit_anchors: boxes_wh")
  num_shapes = len(np.unique(wh, axis=0))
  if not 1 <= k <= num_shapes:
    raise ValueError(f"fit_anchors: k={k} must be in [1, {num_shapes}] (the number of "
                     "distinct box shapes)")
  if iters < 1:
    raise ValueError(f"fit_anchors: iters must be >= 1, got {iters}")
  rng = np.random.default_rng(seed)
  if init == "kmeans++":
    centroids = wh[[rng.integers(len(wh))]]
    for _ in range(k - 1):
      d2 = (1 - centered_iou(wh, centroids).max(1)) ** 2
      centroids = np.concatenate([centroids, wh[[rng.choice(len(wh), p=d2 / d2.sum())]]])
  elif init == "random":
    _, first = np.unique(wh, axis=0, return_index=True)
    centroids = wh[rng.choice(first, k, replace=False)]
  else:
    raise ValueError(f"fit_anchors: init must be 'kmeans++' or 'random', got {init!r}")

  previous = None
  for _ in range(iters):
    dist = 1 - centered_iou(wh, centroids)
    assign = dist.argmin(1)
    if previous is not None and np.array_equal(assign, previous):
      break
    counts = np.bincount(assign, minlength=k)
    sums = np.stack([np.bincount(assign, wh[:, j], minlength=k) for j in range(2)], 1)
    empty = np.flatnonzero(counts == 0)
    centroids = sums / np.maximum(counts, 1)[:, None]
    if len(empty):
      worst = np.argsort(-dist[np.arange(len(wh)), assign], kind="stable")[:len(empty)]
      centroids[empty] = wh[worst]
      assign = None  # the partition changed by fiat: iterate at least once more
    previous = assign
  return centroids[np.argsort(centroids.prod(1), kind="stable")].astype(np.float32)


def spec_from_anchors(anchors_wh: np.ndarray, feature_map_sizes: Sequence[int],
                      image_size: float = 300.0,
                      layer_names: Optional[Sequence[str]] = None,
                      anchors_per_layer: Optional[Sequence[int]] = None,
                      square_tol: float = 0.05, clip: bool = False,
                      keep_counts: bool = False) -> PriorSpec:
  """A :class:`~ssd_jax.priors.PriorSpec` whose per-cell boxes approximate the anchors.

  Assignment: anchors sorted by area go to the layers from the finest feature map (largest side)
  to the coarsest, in contiguous groups (``anchors_per_layer``, in the order of
  ``feature_map_sizes``; default: as even as possible, finer layers taking the remainder).

  Per layer, with no ``max_size`` and ``flip=False``, a PriorSpec's boxes are the square
  ``(s, s)`` and ``(s sqrt(a), s / sqrt(a))`` per ratio ``a``: all of area ``s^2``. So:
    * ``s`` = geometric mean of the layer's anchor sizes ``sqrt(w h)``;
    * each anchor's ratio ``a = w / h`` is kept exactly; anchors within ``square_tol`` of ratio 1
      (``max(a, 1/a) < 1 + square_tol``) are represented by the square.
  Approximations: an anchor's area becomes the layer's ``s^2`` (exact when a layer's anchors
  share one area), and every layer has the square even if no anchor is square (one extra prior
  per cell). The mapping is exact when each layer's anchors share their area and, if any is
  near-square, is exactly square. Check the fit with :func:`mean_best_iou` against
  ``np.concatenate(cell_box_sizes(spec))``.

  ``keep_counts=True`` gives every layer exactly as many boxes per cell as it has anchors (for a
  layout that replaces another of the same count, heads unchanged): the layer's most nearly
  square anchor (smallest ``|log(w / h)|``) is the square, whatever its ratio; the next one, if
  near-square, is a second square of its own size (``max_size = size^2 / s``, so that
  ``sqrt(s max_size)`` is that size); every other anchor keeps its ratio, a ratio of exactly 1
  (which a PriorSpec cannot hold) becoming ``1 + 1e-6``. Of two squares, the ``min_size`` one
  is the one nearer in size to the other anchors (the smaller when there are none), and ``s`` is
  the geometric mean of the sizes of the anchors other than the second square. Exact when those
  anchors share one area and the most nearly square ones are square.

  Args:
    anchors_wh: ``[K, 2]`` normalized ``(w, h)`` (e.g. from :func:`fit_anchors`).
    feature_map_sizes: side of each source map; ``K >= len(feature_map_sizes)``.
    image_size: pixel size the spec is expressed in; steps are ``image_size / f``.
    layer_names: optional names of the source layers.
    anchors_per_layer: optional anchor count per layer (each >= 1, summing to ``K``).
    square_tol: ratio tolerance for folding an anchor into the square.
    clip: clip the generated priors to the image.
    keep_counts: one box per cell per anchor (see above) instead of folding near-square anchors.
  """
  wh = _check_wh(anchors_wh, "spec_from_anchors: anchors_wh")
  num_layers = len(feature_map_sizes)
  if anchors_per_layer is None:
    if len(wh) < num_layers:
      raise ValueError(f"spec_from_anchors: {len(wh)} anchors for {num_layers} layers; every "
                       "layer needs at least one")
    counts = [len(g) for g in np.array_split(np.arange(len(wh)), num_layers)]
  else:
    counts = [int(c) for c in anchors_per_layer]
    if len(counts) != num_layers or min(counts) < 1 or sum(counts) != len(wh):
      raise ValueError(f"spec_from_anchors: anchors_per_layer={tuple(anchors_per_layer)} must "
                       f"give >= 1 anchor to each of {num_layers} layers and sum to {len(wh)}")
  if square_tol < 0:
    raise ValueError(f"spec_from_anchors: square_tol must be >= 0, got {square_tol}")
  # Finest layer first; the default counts (largest first) go to the finest layers.
  layer_order = np.argsort(-np.asarray(feature_map_sizes), kind="stable")
  if anchors_per_layer is not None:
    counts = [counts[k] for k in layer_order]
  groups = np.split(wh[np.argsort(wh.prod(1), kind="stable")], np.cumsum(counts)[:-1])
  min_sizes, ratios = [0.0] * num_layers, [()] * num_layers
  max_sizes: list[Optional[float]] = [None] * num_layers
  for k, group in zip(layer_order, groups):
    if keep_counts:
      s, max_size, ratios[k] = _one_box_per_anchor(group, square_tol)
      min_sizes[k] = s * image_size
      max_sizes[k] = None if max_size is None else max_size * image_size
      continue
    min_sizes[k] = _geometric_mean_size(group) * image_size
    a = group[:, 0] / group[:, 1]
    ratios[k] = tuple(float(r) for r in a
                      if max(r, 1 / r) >= 1 + square_tol and not math.isclose(r, 1))
  return PriorSpec(
      image_size=float(image_size),
      feature_map_sizes=tuple(int(f) for f in feature_map_sizes),
      steps=tuple(image_size / f for f in feature_map_sizes),
      min_sizes=tuple(min_sizes),
      max_sizes=tuple(max_sizes) if any(m is not None for m in max_sizes) else None,
      aspect_ratios=tuple(ratios), flip=False, clip=clip,
      layer_names=tuple(layer_names) if layer_names is not None else None)


def _geometric_mean_size(wh: np.ndarray) -> float:
  """The geometric mean of the sizes ``sqrt(w h)`` of ``[n, 2]`` shapes."""
  return float(np.exp(np.log(wh).sum(1).mean() / 2))


def _one_box_per_anchor(group: np.ndarray, square_tol: float
                        ) -> tuple[float, Optional[float], tuple[float, ...]]:
  """``(min_size, max_size or None, ratios)`` (normalized) of one layer whose ``[n, 2]`` anchors
  become exactly ``n`` boxes per cell (``spec_from_anchors(keep_counts=True)``)."""
  log_ratio = np.log(group[:, 0] / group[:, 1])
  order = np.argsort(np.abs(log_ratio), kind="stable")  # the most nearly square first
  second_square = len(group) > 1 and math.exp(abs(log_ratio[order[1]])) < 1 + square_tol
  if not second_square:
    s, rest = _geometric_mean_size(group), order[1:]
    max_size = None
  else:
    (a, b), rest = order[:2], order[2:]
    # Of the two squares, the min_size one shares its area with the ratio boxes: the one nearer
    # (in log size) to the other anchors' sizes; with no others, the smaller (as Caffe's).
    log_size = lambda i: math.log(_geometric_mean_size(group[[i]]))
    target = math.log(_geometric_mean_size(group[rest])) if len(rest) else -math.inf
    square, other = sorted((a, b), key=lambda i: (abs(log_size(i) - target), log_size(i)))
    s = _geometric_mean_size(group[np.concatenate([[square], rest])])
    max_size = _geometric_mean_size(group[[other]]) ** 2 / s
  # A PriorSpec ratio must not be 1 (squares are min/max sizes): a third square anchor is kept as
  # a box 1e-6 off square, so that the count stays exact.
  ratios = tuple(r if not math.isclose(r, 1) else 1 + 1e-6
                 for r in (float(group[i, 0] / group[i, 1]) for i in rest))
  return s, max_size, ratios


def cell_box_sizes(spec: PriorSpec) -> list[np.ndarray]:
  """Per layer, the ``[A_k, 2]`` normalized ``(w, h)`` of the priors at one location (unclipped)."""
  priors = generate(dataclasses.replace(spec, clip=False))
  starts = np.cumsum((0,) + spec.boxes_per_layer[:-1])
  return [priors[s:s + a, 2:] for s, a in zip(starts, spec.boxes_per_cell)]
