"""ssd_jax.losses against a loop-based NumPy multibox loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssd_jax import losses
from tests import reference_ssd as ref

# The functions under test, jitted as the train step runs them: one compilation per call
# signature, where calling them op by op compiles one program per jnp operation.
hard_negatives = jax.jit(losses.hard_negatives)
multibox_loss = jax.jit(losses.multibox_loss)


def _random_batch(rng, b=3, p=40, c=4, pos_fraction=0.1, ignore_fraction=0.0):
  loc_pred = rng.normal(size=(b, p, 4)).astype(np.float32) * 2
  logits = rng.normal(size=(b, p, c + 1)).astype(np.float32) * 3
  loc_t = rng.normal(size=(b, p, 4)).astype(np.float32)
  cls_t = np.where(rng.random((b, p)) < pos_fraction, rng.integers(1, c + 1, (b, p)), 0)
  cls_t[(cls_t == 0) & (rng.random((b, p)) < ignore_fraction)] = -1
  return loc_pred, logits, loc_t, cls_t.astype(np.int32)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("ratio", [3.0, 1.5, 100.0])
def test_hard_negatives_match_reference(seed, ratio):
  rng = np.random.default_rng(seed)
  bg = rng.random((4, 50)).astype(np.float32)
  pos = rng.random((4, 50)) < 0.15
  pos[0] = False  # an image without objects keeps no negatives
  got = np.asarray(hard_negatives(bg, pos, ratio))
  np.testing.assert_array_equal(got, ref.hard_negatives_reference(bg, pos, ratio))
  assert not (got & pos).any() and not got[0].any()


def test_hard_negatives_hand_case_with_ties():
  bg = np.array([[0.1, 0.9, 0.5, 0.9, 0.3, 0.7]], np.float32)
  pos = np.array([[True, False, False, False, False, False]])
  # One positive -> three negatives: 0.9 (index 1), 0.9 (index 3), 0.7 (index 5).
  np.testing.assert_array_equal(hard_negatives(bg, pos, 3.0), [[0, 1, 0, 1, 0, 1]])


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ignore_fraction", [0.0, 0.3])
def test_multibox_loss_matches_reference(seed, ignore_fraction):
  """Random batches; with ``ignore_fraction``, class targets -1 (priors on crowd boxes)."""
  rng = np.random.default_rng(seed + (10 if ignore_fraction else 0))
  batch = (_random_batch(rng, pos_fraction=0.15, ignore_fraction=ignore_fraction)
           if ignore_fraction else _random_batch(rng))
  assert (batch[3] < 0).any() == bool(ignore_fraction)
  loss, aux = jax.jit(losses.multibox_loss)(*batch)
  want, conf, loc = ref.multibox_loss_reference(*batch)
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  np.testing.assert_allclose(aux["conf_loss"], conf, rtol=1e-5)
  np.testing.assert_allclose(aux["loc_loss"], loc, rtol=1e-5)
  assert int(aux["num_pos"]) == int((batch[3] > 0).sum())


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ratio", [3.0, 100.0])
def test_hard_negatives_skip_ignored_priors(seed, ratio):
  rng = np.random.default_rng(seed)
  bg = rng.random((4, 50)).astype(np.float32)
  pos = rng.random((4, 50)) < 0.15
  ignored = ~pos & (rng.random((4, 50)) < 0.3)
  got = np.asarray(hard_negatives(bg, pos, ratio, ignored))
  np.testing.assert_array_equal(got, ref.hard_negatives_reference(bg, pos, ratio, ignored))
  assert not (got & ignored).any()


def test_ignored_prior_with_huge_background_loss_is_no_hard_negative():
  # Priors: one positive, then an ignored one whose background loss is huge, then 3 negatives.
  logits = np.zeros((1, 5, 3), np.float32)
  logits[0, 1] = [-50.0, 50.0, 0.0]  # Background loss ~100.
  logits[0, 2:, 1] = [3.0, 1.0, 2.0]  # Background losses: prior 2 > prior 4 > prior 3.
  cls_t = np.array([[1, -1, 0, 0, 0]], np.int32)
  loc_pred = np.ones((1, 5, 4), np.float32)
  loc_t = np.zeros((1, 5, 4), np.float32)
  bg = -np.asarray(jax.nn.log_softmax(logits))[..., 0]
  np.testing.assert_array_equal(hard_negatives(bg, cls_t > 0, 1.0, cls_t < 0),
                                [[0, 0, 1, 0, 0]])
  loss_fn = lambda lp, lg: losses.multibox_loss(lp, lg, loc_t, cls_t, neg_pos_ratio=2.0)
  (loss, aux), grads = jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True))(
      loc_pred, logits)
  # By hand: CE of prior 0 (class 1) and of the two hard negatives 2 and 4 (class 0); no loss
  # at all for prior 1, which also gets no gradient.
  ce = -np.asarray(jax.nn.log_softmax(logits))
  np.testing.assert_allclose(aux["conf_loss"], ce[0, 0, 1] + ce[0, 2, 0] + ce[0, 4, 0], rtol=1e-6)
  np.testing.assert_allclose(aux["loc_loss"], 4 * 0.5, rtol=1e-6)
  assert float(aux["num_pos"]) == 1 and float(aux["num_neg"]) == 2
  assert not np.asarray(grads[0])[0, 1].any() and not np.asarray(grads[1])[0, 1].any()
  assert np.isfinite(float(loss))


def test_alpha_weights_localization():
  batch = _random_batch(np.random.default_rng(7))
  l1, aux = multibox_loss(*batch, alpha=1.0)
  l2, _ = multibox_loss(*batch, alpha=2.0)
  np.testing.assert_allclose(l2 - l1, aux["loc_loss"], rtol=1e-5)


def test_no_positives_gives_zero_loss_and_finite_gradients():
  loc_pred, logits, loc_t, _ = _random_batch(np.random.default_rng(1))
  cls_t = np.zeros(loc_pred.shape[:2], np.int32)
  loss, grads = jax.jit(jax.value_and_grad(
      lambda a, b: losses.multibox_loss(a, b, loc_t, cls_t)[0], argnums=(0, 1)))(loc_pred, logits)
  assert float(loss) == 0.0
  assert all(np.isfinite(np.asarray(g)).all() for g in grads)


def test_gradients_finite_for_degenerate_inputs():
  loc_pred, logits, _, cls_t = _random_batch(np.random.default_rng(2))
  logits = logits * 1e4  # saturated softmax
  loc_t = np.full(loc_pred.shape, 70.0, np.float32)  # the targets of a near-zero-area box
  grads = jax.jit(jax.grad(lambda a, b: losses.multibox_loss(a, b, loc_t, cls_t)[0],
                           argnums=(0, 1)))(loc_pred, logits)
  assert all(np.isfinite(np.asarray(g)).all() for g in grads)


def test_bf16_logits_give_float32_loss():
  batch = list(_random_batch(np.random.default_rng(3)))
  batch[1] = jnp.asarray(batch[1], jnp.bfloat16)
  loss, _ = multibox_loss(*batch)
  assert loss.dtype == jnp.float32


def test_sharded_normalizer_sums_to_single_device_loss():
  """With ``axis_name`` the per-shard losses add up to the whole-batch loss."""
  batch = _random_batch(np.random.default_rng(4), b=4)
  whole, _ = multibox_loss(*batch)
  per_shard = jax.jit(jax.vmap(lambda *a: losses.multibox_loss(*a, axis_name="data")[0],
                               axis_name="data"))(*[x.reshape(2, 2, *x.shape[1:]) for x in batch])
  np.testing.assert_allclose(per_shard.sum(), whole, rtol=1e-5)
