"""Box formats, IoU and the SSD offset encoding.

Conventions used throughout ssd_jax:
  * ``xyxy``: ``(xmin, ymin, xmax, ymax)``; ``cxcywh``: ``(cx, cy, w, h)``.
  * Coordinates are normalized to ``[0, 1]`` by image width/height unless a docstring says pixels.
  * The last axis holds the 4 coordinates; any leading batch axes are allowed.

Every function is pure ``jnp`` (jit/vmap friendly, static shapes). Degenerate input (zero-area or
inverted boxes) never produces NaN or inf: such boxes have area 0 and IoU 0 with everything.
"""

import math
from typing import Sequence

import jax.numpy as jnp

Array = jnp.ndarray

# Smallest width/height used when taking logs or dividing: keeps encode finite for degenerate boxes.
_EPS = 1e-6


def xyxy_to_cxcywh(boxes: Array) -> Array:
  """``[..., 4]`` xyxy -> ``[..., 4]`` cxcywh."""
  boxes = jnp.asarray(boxes)
  xy_min, xy_max = boxes[..., :2], boxes[..., 2:]
  return jnp.concatenate([(xy_min + xy_max) / 2, xy_max - xy_min], axis=-1)


def cxcywh_to_xyxy(boxes: Array) -> Array:
  """``[..., 4]`` cxcywh -> ``[..., 4]`` xyxy."""
  boxes = jnp.asarray(boxes)
  center, size = boxes[..., :2], boxes[..., 2:]
  return jnp.concatenate([center - size / 2, center + size / 2], axis=-1)


def area(boxes: Array) -> Array:
  """``[..., 4]`` xyxy -> ``[...]`` area; inverted boxes have area 0 (not negative)."""
  boxes = jnp.asarray(boxes)
  wh = jnp.maximum(boxes[..., 2:] - boxes[..., :2], 0.0)
  return wh[..., 0] * wh[..., 1]


def iou(a: Array, b: Array) -> Array:
  """Pairwise intersection over union.

  Args:
    a: ``[..., N, 4]`` xyxy.
    b: ``[..., M, 4]`` xyxy (same leading axes as ``a``, or broadcastable).

  Returns:
    ``[..., N, M]`` IoU in ``[0, 1]``. A pair whose union is 0 (two degenerate boxes) has IoU 0.
  """
  a = jnp.asarray(a, jnp.float32)
  b = jnp.asarray(b, jnp.float32)
  lt = jnp.maximum(a[..., :, None, :2], b[..., None, :, :2])  # [..., N, M, 2]
  rb = jnp.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
  wh = jnp.maximum(rb - lt, 0.0)
  inter = wh[..., 0] * wh[..., 1]
  union = area(a)[..., :, None] + area(b)[..., None, :] - inter
  # `where` on both sides keeps the gradient finite where union == 0.
  safe_union = jnp.where(union > 0, union, 1.0)
  return jnp.where(union > 0, inter / safe_union, 0.0)


def encode(boxes_xyxy: Array, priors_cxcywh: Array,
           variances: Sequence[float] = (0.1, 0.2)) -> Array:
  """SSD regression targets of boxes relative to priors (Caffe ``CENTER_SIZE`` coding).

  ``t_cx = (g_cx - p_cx) / (v0 * p_w)``, ``t_w = log(g_w / p_w) / v1`` (same for y, h).

  Args:
    boxes_xyxy: ``[..., P, 4]`` ground-truth boxes, normalized xyxy, one per prior.
    priors_cxcywh: ``[P, 4]`` (or broadcastable) priors, normalized cxcywh.
    variances: ``(center_variance, size_variance)``.

  Returns:
    ``[..., P, 4]`` offsets ``(t_cx, t_cy, t_w, t_h)``. Widths/heights are clamped to ``>= 1e-6``
    before the log so that degenerate boxes give large but finite targets.
  """
  g = xyxy_to_cxcywh(jnp.asarray(boxes_xyxy, jnp.float32))
  p = jnp.asarray(priors_cxcywh, jnp.float32)
  p_wh = jnp.maximum(p[..., 2:], _EPS)
  t_xy = (g[..., :2] - p[..., :2]) / (variances[0] * p_wh)
  t_wh = jnp.log(jnp.maximum(g[..., 2:], _EPS) / p_wh) / variances[1]
  return jnp.concatenate([t_xy, t_wh], axis=-1)


# exp() of more than this overflows float32 far beyond any image; clamp like torchvision does.
_MAX_LOG_SCALE = math.log(1000.0 / 16)


def decode(offsets: Array, priors_cxcywh: Array,
           variances: Sequence[float] = (0.1, 0.2)) -> Array:
  """Inverse of :func:`encode`: ``[..., P, 4]`` offsets -> ``[..., P, 4]`` normalized xyxy.

  The size offsets are clamped (``t_w * v1 <= log(1000/16)``) so that wild network outputs give
  huge but finite boxes instead of inf.
  """
  t = jnp.asarray(offsets, jnp.float32)
  p = jnp.asarray(priors_cxcywh, jnp.float32)
  center = p[..., :2] + t[..., :2] * variances[0] * p[..., 2:]
  size = p[..., 2:] * jnp.exp(jnp.minimum(t[..., 2:] * variances[1], _MAX_LOG_SCALE))
  return cxcywh_to_xyxy(jnp.concatenate([center, size], axis=-1))
