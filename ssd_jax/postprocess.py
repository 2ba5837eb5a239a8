"""Greedy non-maximum suppression and SSD detection decoding, with static shapes.

Semantics follow the authors' Caffe ``DetectionOutput`` layer and ssd.pytorch's ``Detect``:

  * A box is suppressed by a higher-ranked kept box of the same class when their IoU is strictly
    greater than ``iou_threshold`` (Caffe keeps ``overlap <= threshold``; torchvision's ``nms``
    also discards ``IoU > threshold``).
  * Ranking is by decreasing score; equal scores are ranked by lower index first, so results are
    deterministic.
  * Boxes of different classes never suppress each other.
  * A candidate passes the confidence threshold when ``score > score_threshold`` (strictly).

Everything is pure ``jnp`` with static shapes: outputs are padded to a fixed size and the greedy
recurrence runs as a ``lax.while_loop`` on device, so :func:`decode_detections` can sit inside the
same ``jax.jit`` as the model's forward pass.
"""

import functools
from typing import Dict, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from ssd_jax import boxes as box_lib

Array = jnp.ndarray


def _greedy_keep(suppress: Array, valid: Array) -> Array:
  """Solves the greedy NMS recurrence over candidates in rank order.

  Candidate ``i`` is kept iff it is valid and no kept candidate ``j < i`` has
  ``suppress[j, i]``. One step per candidate, stopping after the last valid one.

  Args:
    suppress: ``[N, N]`` bool, ``suppress[j, i]``: candidate ``j`` would suppress ``i``. Only the
      strict upper triangle (``j < i``) is read.
    valid: ``[N]`` bool.

  Returns:
    ``[N]`` bool keep mask.
  """
  n = valid.shape[0]
  if n == 0:
    return valid
  position = jnp.arange(n)
  suppress = suppress & (position[:, None] < position[None, :])
  # Candidates after the last valid one cannot change anything: skip their steps.
  num_steps = jnp.max(jnp.where(valid, position + 1, 0), initial=0)

  def body(state):
    i, keep = state
    return i + 1, keep & ~(keep[i] & suppress[i])

  _, keep = lax.while_loop(lambda state: state[0] < num_steps, body, (jnp.int32(0), valid))
  return keep


def _check_iou_threshold(iou_threshold: float) -> float:
  iou_threshold = float(iou_threshold)
  if not 0.0 <= iou_threshold <= 1.0:
    raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}.")
  return iou_threshold


def _check_positive_int(name: str, value: int) -> int:
  if int(value) != value or value < 1:
    raise ValueError(f"{name} must be a positive integer, got {value!r}.")
  return int(value)


def _decode_one(loc, logits, priors, *, score_threshold, iou_threshold, pre_nms_top_k,
                max_detections, variances):
  """:func:`decode_detections` for one image: ``loc [P, 4]``, ``logits [P, C+1]``."""
  num_priors, num_classes = logits.shape[0], logits.shape[1] - 1
  probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  decoded = box_lib.decode(loc, priors, variances)  # [P, 4] xyxy, unclipped (as in Caffe).

  # Per foreground class, the top-k priors above the threshold. lax.top_k ranks ties by lower
  # prior index, so each row is already in NMS order.
  class_scores = probs[:, 1:].T  # [C, P]
  class_scores = jnp.where(class_scores > score_threshold, class_scores, -jnp.inf)
  k = min(pre_nms_top_k, num_priors)
  top_scores, top_priors = lax.top_k(class_scores, k)  # [C, k]
  top_boxes = decoded[top_priors]  # [C, k, 4]

  # NMS per class: a [C, k, k] IoU tensor rather than [C*k, C*k] with cross-class pairs masked.
  suppress = box_lib.iou(top_boxes, top_boxes) > iou_threshold
  keep = jax.vmap(_greedy_keep)(suppress, top_scores > -jnp.inf)  # [C, k]

  # Best max_detections over all classes. Flattening class-major makes ties rank by lower class,
  # then lower prior index.
  flat_scores = jnp.where(keep, top_scores, -jnp.inf).reshape(-1)
  num_candidates = num_classes * k
  if num_candidates < max_detections:
    flat_scores = jnp.pad(flat_scores, (0, max_detections - num_candidates),
                          constant_values=-jnp.inf)
  scores, flat_index = lax.top_k(flat_scores, max_detections)
  is_detection = scores > -jnp.inf
  flat_index = jnp.minimum(flat_index, num_candidates - 1)  # Padding slots; masked below.
  class_ids = flat_index // k + 1
  det_boxes = jnp.clip(top_boxes.reshape(-1, 4)[flat_index], 0.0, 1.0)
  return {
      "boxes": jnp.where(is_detection[:, None], det_boxes, 0.0),
      "scores": jnp.where(is_detection, scores, 0.0),
      "classes": jnp.where(is_detection, class_ids, 0).astype(jnp.int32),
      "num_detections": jnp.sum(is_detection, dtype=jnp.int32),
  }


@functools.partial(jax.jit, static_argnames=("pre_nms_top_k", "max_detections", "variances"))
def _decode(loc, logits, priors, score_threshold, iou_threshold, pre_nms_top_k, max_detections,
            variances):
  one = functools.partial(_decode_one, score_threshold=score_threshold,
                          iou_threshold=iou_threshold, pre_nms_top_k=pre_nms_top_k,
                          max_detections=max_detections, variances=variances)
  return jax.vmap(one, in_axes=(0, 0, None))(loc, logits, priors)


def decode_detections(loc: Array, logits: Array, priors: Array, score_threshold: float = 0.01,
                      iou_threshold: float = 0.45, pre_nms_top_k: int = 400,
                      max_detections: int = 200,
                      variances: Sequence[float] = (0.1, 0.2)) -> Dict[str, Array]:
  """SSD detection output: decode, threshold, per-class NMS, keep the best per image.

  Per image and per foreground class ``c`` (Caffe / ssd.pytorch): class probabilities by softmax
  over ``C+1`` logits; the ``pre_nms_top_k`` priors with probability ``> score_threshold`` (at
  most ``P``); greedy NMS at ``iou_threshold`` (see the module docstring) on the decoded, unclipped
  boxes; then the ``max_detections`` highest-scoring survivors over all classes (ties: lower
  class, then lower prior index). Boxes are clipped to ``[0, 1]`` on output only, as in Caffe.

  The function is jit-compiled and also traces inside an outer ``jax.jit``. Arguments after
  ``priors`` are Python numbers, checked eagerly; the thresholds are traced (changing them does
  not recompile), the sizes and variances are compile-time constants. Inputs must be finite.

  Args:
    loc: ``[B, P, 4]`` predicted offsets (encoding of :func:`ssd_jax.boxes.encode`).
    logits: ``[B, P, C+1]`` class logits, class 0 = background.
    priors: ``[P, 4]`` normalized cxcywh.
    score_threshold: minimum class probability (exclusive).
    iou_threshold: NMS IoU threshold in ``[0, 1]``.
    pre_nms_top_k: candidates per class entering NMS.
    max_detections: ``K``, detections kept per image.
    variances: ``(center_variance, size_variance)``.

  Returns:
    A dict with ``K = max_detections`` rows per image, sorted by decreasing score, padding rows
    all zero:
      ``boxes``: ``[B, K, 4]`` float32 normalized xyxy in ``[0, 1]``.
      ``scores``: ``[B, K]`` float32.
      ``classes``: ``[B, K]`` int32 in ``1..C``; 0 for padding.
      ``num_detections``: ``[B]`` int32, the number of non-padding rows.

  Raises:
    ValueError: on inconsistent shapes or out-of-range static arguments.
  """
  iou_threshold = _check_iou_threshold(iou_threshold)
  pre_nms_top_k = _check_positive_int("pre_nms_top_k", pre_nms_top_k)
  max_detections = _check_positive_int("max_detections", max_detections)
  variances = tuple(float(v) for v in variances)
  if len(variances) != 2:
    raise ValueError(f"variances must be (center, size), got {variances}.")
  loc_shape, logits_shape, priors_shape = jnp.shape(loc), jnp.shape(logits), jnp.shape(priors)
  if len(loc_shape) != 3 or loc_shape[2] != 4:
    raise ValueError(f"decode_detections: loc must have shape [B, P, 4], got {loc_shape}.")
  if len(logits_shape) != 3 or logits_shape[:2] != loc_shape[:2] or logits_shape[2] < 2:
    raise ValueError(f"decode_detections: logits must have shape [B, P, C+1] with B, P = "
                     f"{loc_shape[:2]} from loc and C >= 1, got {logits_shape}.")
  if priors_shape != (loc_shape[1], 4):
    raise ValueError(f"decode_detections: priors must have shape [P, 4] = [{loc_shape[1]}, 4], "
                     f"got {priors_shape}.")
  return _decode(loc, logits, priors, float(score_threshold), iou_threshold, pre_nms_top_k,
                 max_detections, variances)
