"""The SSD multibox loss: softmax confidence loss with hard negative mining + Smooth-L1."""

from typing import Optional

import jax
import jax.numpy as jnp
import optax

Array = jnp.ndarray


def _order_keys(x: Array) -> Array:
  """Maps float32 to uint32 so that unsigned integer order equals float order."""
  bits = jax.lax.bitcast_convert_type(x.astype(jnp.float32), jnp.uint32)
  sign = bits >> 31
  return jnp.where(sign == 1, ~bits, bits | jnp.uint32(0x80000000))


def hard_negatives(background_loss: Array, positive: Array, neg_pos_ratio: float,
                   ignored: Optional[Array] = None) -> Array:
  """Selects, per image, the negatives with the largest background confidence loss.

  Negatives are the priors neither positive nor ignored. Keeps the top
  ``k = min(floor(neg_pos_ratio * num_pos), num_negatives)`` negatives of each image, ties going
  to the lower prior index (what a stable descending sort would keep). Static shapes and no sort:
  sorting is slow on XLA:CPU, so the k-th largest loss is found by a radix select (32 counting
  passes over the float bits, one per bit), then the negatives above it and the first of those
  equal to it are kept.

  Args:
    background_loss: ``[B, P]`` loss of each prior were it background (``-log softmax(.)_0``).
    positive: ``[B, P]`` bool, priors matched to an object.
    neg_pos_ratio: negatives kept per positive (3 in the paper).
    ignored: ``[B, P]`` bool, priors that are neither positive nor negative (class target -1,
      see :mod:`ssd_jax.matching`), never selected; None = none.

  Returns:
    ``[B, P]`` bool mask of the selected negatives (never overlaps ``positive`` or ``ignored``).
  """
  negative = ~positive if ignored is None else ~positive & ~ignored
  num_pos = positive.sum(axis=1, keepdims=True)
  k = jnp.minimum(jnp.floor(neg_pos_ratio * num_pos).astype(jnp.int32),
                  negative.sum(axis=1, keepdims=True))
  keys = _order_keys(background_loss)

  def refine(bit, threshold):
    # Largest threshold with at least k negatives >= it, decided one bit at a time from the top.
    candidate = threshold | (jnp.uint32(1) << (31 - bit).astype(jnp.uint32))
    count = jnp.sum(negative & (keys >= candidate), axis=1, keepdims=True)
    return jnp.where(count >= k, candidate, threshold)

  # zeros_like(k) (not a constant) so that the carry matches under shard_map (varying axes).
  kth = jax.lax.fori_loop(0, 32, refine, jnp.zeros_like(k, jnp.uint32))
  above = negative & (keys > kth)
  at = negative & (keys == kth)
  room = k - above.sum(axis=1, keepdims=True)
  return above | (at & (jnp.cumsum(at, axis=1) <= room))


def smooth_l1(x: Array, beta: float = 1.0) -> Array:
  """Elementwise Smooth-L1 (Huber with slope 1): ``0.5 x^2 / beta`` if ``|x| < beta``."""
  ax = jnp.abs(x)
  return jnp.where(ax < beta, 0.5 * x * x / beta, ax - 0.5 * beta)


def multibox_loss(loc_pred: Array, logits: Array, loc_targets: Array, cls_targets: Array,
                  neg_pos_ratio: float = 3.0, alpha: float = 1.0,
                  axis_name: Optional[str] = None) -> tuple[Array, dict[str, Array]]:
  """``L = (L_conf + alpha L_loc) / N`` of Liu et al. Eq. 1, ``N`` = positives in the batch.

  Args:
    loc_pred: ``[B, P, 4]`` predicted offsets (encoded like ``loc_targets``).
    logits: ``[B, P, C + 1]`` class scores, index 0 = background (any float dtype; the loss is
      computed in float32).
    loc_targets: ``[B, P, 4]`` from :func:`ssd_jax.matching.encode_targets`.
    cls_targets: ``[B, P]`` int, 1..C = positive, 0 = background, < 0 (-1) = ignored: neither a
      positive nor a hard-negative candidate, no loss of any kind (see :mod:`ssd_jax.matching`).
    neg_pos_ratio: hard negatives kept per positive, per image.
    alpha: weight of the localization term.
    axis_name: when called per device inside ``shard_map``/``pmap``, the data axis name: ``N`` is
      then the positives of the *global* batch, so summing the per-device losses (and gradients)
      gives exactly the single-device loss.

  Returns:
    ``(loss, aux)``: scalar loss (0 with finite gradients when ``N == 0``) and a dict with the
    normalized ``conf_loss`` and ``loc_loss`` and the counts ``num_pos`` and ``num_neg``.
  """
  logits = logits.astype(jnp.float32)
  loc_pred = loc_pred.astype(jnp.float32)
  positive = cls_targets > 0
  ignored = cls_targets < 0
  # Ignored priors' cross entropy is masked out below; label 0 keeps their gather in range.
  ce = optax.softmax_cross_entropy_with_integer_labels(
      logits, jnp.maximum(cls_targets, 0))  # [B, P]
  background_loss = -jax.nn.log_softmax(logits)[..., 0]
  negative = jax.lax.stop_gradient(
      hard_negatives(background_loss, positive, neg_pos_ratio, ignored))
  conf_sum = jnp.sum(jnp.where(positive | negative, ce, 0.0))
  loc_sum = jnp.sum(jnp.where(positive[..., None], smooth_l1(loc_pred - loc_targets), 0.0))
  num_pos = positive.sum().astype(jnp.float32)
  num_neg = negative.sum().astype(jnp.float32)
  if axis_name is not None:
    num_pos_total = jax.lax.psum(num_pos, axis_name)
  else:
    num_pos_total = num_pos
  normalizer = jnp.maximum(num_pos_total, 1.0)
  conf_loss, loc_loss = conf_sum / normalizer, loc_sum / normalizer
  aux = {"conf_loss": conf_loss, "loc_loss": loc_loss, "num_pos": num_pos, "num_neg": num_neg}
  return conf_loss + alpha * loc_loss, aux
