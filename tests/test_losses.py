"""ssd_jax.losses against a loop-based NumPy multibox loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssd_jax import losses
from tests import reference_ssd as ref


def _random_batch(rng, b=3, p=40, c=4, pos_fraction=0.1):
  loc_pred = rng.normal(size=(b, p, 4)).astype(np.float32) * 2
  logits = rng.normal(size=(b, p, c + 1)).astype(np.float32) * 3
  loc_t = rng.normal(size=(b, p, 4)).astype(np.float32)
  cls_t = np.where(rng.random((b, p)) < pos_fraction, rng.integers(1, c + 1, (b, p)), 0)
  return loc_pred, logits, loc_t, cls_t.astype(np.int32)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("ratio", [3.0, 1.5, 100.0])
def test_hard_negatives_match_reference(seed, ratio):
  rng = np.random.default_rng(seed)
  bg = rng.random((4, 50)).astype(np.float32)
  pos = rng.random((4, 50)) < 0.15
  pos[0] = False  # an image without objects keeps no negatives
  got = np.asarray(losses.hard_negatives(bg, pos, ratio))
  np.testing.assert_array_equal(got, ref.hard_negatives_reference(bg, pos, ratio))
  assert not (got & pos).any() and not got[0].any()


def test_hard_negatives_hand_case_with_ties():
  bg = np.array([[0.1, 0.9, 0.5, 0.9, 0.3, 0.7]], np.float32)
  pos = np.array([[True, False, False, False, False, False]])
  # One positive -> three negatives: 0.9 (index 1), 0.9 (index 3), 0.7 (index 5).
  np.testing.assert_array_equal(losses.hard_negatives(bg, pos, 3.0), [[0, 1, 0, 1, 0, 1]])


@pytest.mark.parametrize("seed", range(4))
def test_multibox_loss_matches_reference(seed):
  rng = np.random.default_rng(seed)
  batch = _random_batch(rng)
  loss, aux = jax.jit(losses.multibox_loss)(*batch)
  want, conf, loc = ref.multibox_loss_reference(*batch)
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  np.testing.assert_allclose(aux["conf_loss"], conf, rtol=1e-5)
  np.testing.assert_allclose(aux["loc_loss"], loc, rtol=1e-5)
  assert int(aux["num_pos"]) == int((batch[3] > 0).sum())


def test_alpha_weights_localization():
  batch = _random_batch(np.random.default_rng(7))
  l1, aux = losses.multibox_loss(*batch, alpha=1.0)
  l2, _ = losses.multibox_loss(*batch, alpha=2.0)
  np.testing.assert_allclose(l2 - l1, aux["loc_loss"], rtol=1e-5)


def test_no_positives_gives_zero_loss_and_finite_gradients():
  loc_pred, logits, loc_t, _ = _random_batch(np.random.default_rng(1))
  cls_t = np.zeros(loc_pred.shape[:2], np.int32)
  loss, grads = jax.value_and_grad(lambda a, b: losses.multibox_loss(a, b, loc_t, cls_t)[0],
                                   argnums=(0, 1))(loc_pred, logits)
  assert float(loss) == 0.0
  assert all(np.isfinite(np.asarray(g)).all() for g in grads)


def test_gradients_finite_for_degenerate_inputs():
  loc_pred, logits, _, cls_t = _random_batch(np.random.default_rng(2))
  logits = logits * 1e4  # saturated softmax
  loc_t = np.full(loc_pred.shape, 70.0, np.float32)  # the targets of a near-zero-area box
  grads = jax.grad(lambda a, b: losses.multibox_loss(a, b, loc_t, cls_t)[0],
                   argnums=(0, 1))(loc_pred, logits)
  assert all(np.isfinite(np.asarray(g)).all() for g in grads)


def test_bf16_logits_give_float32_loss():
  batch = list(_random_batch(np.random.default_rng(3)))
  batch[1] = jnp.asarray(batch[1], jnp.bfloat16)
  loss, _ = losses.multibox_loss(*batch)
  assert loss.dtype == jnp.float32


def test_sharded_normalizer_sums_to_single_device_loss():
  """With ``axis_name`` the per-shard losses add up to the whole-batch loss."""
  batch = _random_batch(np.random.default_rng(4), b=4)
  whole, _ = losses.multibox_loss(*batch)
  per_shard = jax.vmap(lambda *a: losses.multibox_loss(*a, axis_name="data")[0],
                       axis_name="data")(*[x.reshape(2, 2, *x.shape[1:]) for x in batch])
  np.testing.assert_allclose(per_shard.sum(), whole, rtol=1e-5)
