"""Matching priors to ground truth and building SSD training targets.

Everything works on one image with static shapes; ``jax.vmap`` maps it over a batch. Ground truth
arrives padded to a fixed ``M`` rows with label 0 marking padding, so one compiled function serves
any number of real boxes up to ``M``.

Crowd regions (COCO ``iscrowd``) are ignored rather than learned: a crowd box takes no part in
matching (it is treated like padding), and a prior left as background that overlaps a crowd
box at IoU ``>= iou_threshold`` is *ignored*, neither positive nor negative: ``match_priors`` gives
it index :data:`IGNORE_INDEX` (-2) and ``encode_targets`` class target :data:`IGNORE_CLASS` (-1),
which :func:`ssd_jax.losses.multibox_loss` leaves out of the loss.
"""

from typing import Optional, Sequence

import jax
import jax.numpy as jnp

from ssd_jax import boxes as box_lib

Array = jnp.ndarray

MATCH_MODES = ("per_gt", "bipartite")
# match_priors' index of an ignored prior (background by matching, but covered by a crowd box).
IGNORE_INDEX = -2
# encode_targets' class target of an ignored prior.
IGNORE_CLASS = -1


def _check_inputs(gt_boxes: Array, gt_labels: Array, priors: Array, mode: str,
                  crowd: Optional[Array]) -> None:
  """Static (shape/dtype/config) checks; values cannot be checked under jit."""
  if mode not in MATCH_MODES:
    raise ValueError(f"match mode must be one of {MATCH_MODES}, got {mode!r}")
  if gt_boxes.ndim != 2 or gt_boxes.shape[-1] != 4:
    raise ValueError(f"gt_boxes must be [M, 4] xyxy, got shape {gt_boxes.shape}")
  if gt_labels.shape != gt_boxes.shape[:1]:
    raise ValueError(f"gt_labels must be [M] = {gt_boxes.shape[:1]}, got {gt_labels.shape}")
  if not jnp.issubdtype(gt_labels.dtype, jnp.integer):
    raise ValueError(f"gt_labels must be integers (0 = padding), got {gt_labels.dtype}")
  if priors.ndim != 2 or priors.shape[-1] != 4:
    raise ValueError(f"priors must be [P, 4] cxcywh, got shape {priors.shape}")
  if crowd is not None and crowd.shape != gt_labels.shape:
    raise ValueError(f"crowd must be [M] = {gt_labels.shape}, got {crowd.shape}")


def _forced_per_gt(overlaps: Array) -> Array:
  """ssd.pytorch's forcing step: every gt claims its best prior; a later gt wins a shared one.

  Args:
    overlaps: ``[M, P]`` IoU with the rows that may not match (padding, crowd) set to -1.

  Returns:
    ``[P]`` int32 forced gt index, -1 where no gt forces the prior.
  """
  m, p = overlaps.shape
  best_prior = jnp.argmax(overlaps, axis=1)  # [M]
  # A gt that overlaps no prior at all (degenerate or off-image) forces nothing.
  claims = (best_prior[:, None] == jnp.arange(p)[None, :]) & (overlaps.max(axis=1) > 0)[:, None]
  return jnp.max(jnp.where(claims, jnp.arange(m)[:, None], -1), axis=0).astype(jnp.int32)


def _forced_bipartite(overlaps: Array) -> Array:
  """Caffe's greedy bipartite step: repeatedly take the globally best (gt, prior) pair.

  Each of the ``M`` rounds picks the largest IoU among gts and priors not yet taken (ties: the
  first in gt-major order) and stops matching once no remaining pair overlaps (IoU <= 0).
  """
  m, p = overlaps.shape

  def body(_, state):
    forced, gt_free, prior_free = state
    masked = jnp.where(gt_free[:, None] & prior_free[None, :], overlaps, -1.0)
    flat = jnp.argmax(masked)
    g, q = flat // p, flat % p
    ok = masked.reshape(-1)[flat] > 0
    forced = jnp.where(ok, forced.at[q].set(g.astype(jnp.int32)), forced)
    gt_free = jnp.where(ok, gt_free.at[g].set(False), gt_free)
    prior_free = jnp.where(ok, prior_free.at[q].set(False), prior_free)
    return forced, gt_free, prior_free

  init = (jnp.full((p,), -1, jnp.int32), jnp.ones((m,), bool), jnp.ones((p,), bool))
  return jax.lax.fori_loop(0, m, body, init)[0]


def match_priors(gt_boxes: Array, gt_labels: Array, priors: Array, iou_threshold: float = 0.5,
                 mode: str = "per_gt", crowd: Optional[Array] = None) -> Array:
  """Assigns each prior a ground-truth box, background, or (with ``crowd``) "ignored".

  Two steps (Liu et al. Sec. 2.2): (1) every ground truth takes a prior — ``'per_gt'``: its own
  best-IoU prior, a later ground truth winning a prior that two share (ssd.pytorch); or
  ``'bipartite'``: Caffe's greedy global bipartite matching; (2) every other prior whose best IoU
  over the ground truths is ``>= iou_threshold`` takes that ground truth (ties: lowest index).
  Crowd rows take part in neither step; a third step ignores every prior still background whose
  IoU with some crowd box is ``>= iou_threshold``.

  Args:
    gt_boxes: ``[M, 4]`` normalized xyxy, padded.
    gt_labels: ``[M]`` int, 1..C for objects and 0 for padding rows (never matched).
    priors: ``[P, 4]`` normalized cxcywh.
    iou_threshold: IoU at or above which a prior is positive in step (2) (or, with a crowd box,
      ignored in the third step).
    mode: ``'per_gt'`` or ``'bipartite'``.
    crowd: ``[M]`` bool, True for crowd regions; None = no crowd (the same result as all False).
      Crowd flags on padding rows (label 0) are disregarded.

  Returns:
    ``[P]`` int32 index into ``gt_boxes`` of each prior's (non-crowd) ground truth, -1 for
    background, :data:`IGNORE_INDEX` (-2) for ignored priors.
  """
  gt_boxes, gt_labels, priors = map(jnp.asarray, (gt_boxes, gt_labels, priors))
  crowd = None if crowd is None else jnp.asarray(crowd, bool)
  _check_inputs(gt_boxes, gt_labels, priors, mode, crowd)
  overlaps = box_lib.iou(gt_boxes, box_lib.cxcywh_to_xyxy(priors))  # [M, P]
  real = gt_labels > 0
  matchable = real if crowd is None else real & ~crowd
  # Rows that may not match get IoU -1: below any threshold, and never "overlapping" (> 0) in the
  # forcing steps, so they claim no prior there either.
  matched = jnp.where(matchable[:, None], overlaps, -1.0)
  forced = _forced_per_gt(matched) if mode == "per_gt" else _forced_bipartite(matched)
  best_gt = jnp.argmax(matched, axis=0).astype(jnp.int32)  # [P]
  best_iou = jnp.max(matched, axis=0)
  by_threshold = jnp.where(best_iou >= iou_threshold, best_gt, -1)
  gt_index = jnp.where(forced >= 0, forced, by_threshold)
  if crowd is None:
    return gt_index
  crowd_iou = jnp.max(jnp.where((real & crowd)[:, None], overlaps, -1.0), axis=0)  # [P]
  return jnp.where((gt_index < 0) & (crowd_iou >= iou_threshold), IGNORE_INDEX, gt_index)


def encode_targets(gt_boxes: Array, gt_labels: Array, priors: Array, iou_threshold: float = 0.5,
                   variances: Sequence[float] = (0.1, 0.2), mode: str = "per_gt",
                   crowd: Optional[Array] = None) -> tuple[Array, Array]:
  """Training targets of one image: matched boxes encoded against their priors.

  Args:
    gt_boxes, gt_labels, priors, iou_threshold, mode, crowd: as in :func:`match_priors`.
    variances: the box coding variances (see :func:`ssd_jax.boxes.encode`).

  Returns:
    ``loc_targets [P, 4]`` float32 encoded offsets (zeros for background and ignored priors) and
    ``cls_targets [P]`` int32 labels: 1..C for positives, 0 = background, :data:`IGNORE_CLASS`
    (-1) = ignored (background overlapping a crowd box; only with ``crowd``).
  """
  gt_index = match_priors(gt_boxes, gt_labels, priors, iou_threshold, mode, crowd)
  positive = gt_index >= 0
  safe_index = jnp.maximum(gt_index, 0)
  background = jnp.where(gt_index == IGNORE_INDEX, IGNORE_CLASS, 0)
  cls_targets = jnp.where(positive, jnp.asarray(gt_labels)[safe_index], background)
  loc = box_lib.encode(jnp.asarray(gt_boxes)[safe_index], priors, variances)
  loc_targets = jnp.where(positive[:, None], loc, 0.0)
  return loc_targets, cls_targets.astype(jnp.int32)
