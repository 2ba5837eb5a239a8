"""ssd_jax.matching against loop-based references of both published matching algorithms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssd_jax import boxes, matching, priors
from tests import reference_ssd as ref
from tests.conftest import random_boxes


def _small_priors() -> np.ndarray:
  spec = priors.from_linear_scales((6, 3, 1), 0.2, 0.9, (2,), image_size=60)
  return priors.generate(spec)


@pytest.mark.parametrize("mode", ["per_gt", "bipartite"])
@pytest.mark.parametrize("seed", range(6))
def test_match_agrees_with_reference(mode, seed):
  rng = np.random.default_rng(seed)
  p = _small_priors()
  m = 8
  gt = random_boxes(rng, m)
  labels = rng.integers(1, 5, size=m).astype(np.int32)
  labels[rng.random(m) < 0.3] = 0  # padding rows anywhere
  got = jax.jit(matching.match_priors, static_argnames="mode")(gt, labels, p, 0.5, mode)
  np.testing.assert_array_equal(got, ref.match_reference(gt, labels, p, 0.5, mode))


@pytest.mark.parametrize("mode", ["per_gt", "bipartite"])
def test_every_real_ground_truth_gets_a_prior_even_below_threshold(mode):
  p = _small_priors()
  gt = np.array([[0.40, 0.40, 0.47, 0.52], [0.41, 0.41, 0.48, 0.50], [0, 0, 0, 0]], np.float32)
  labels = np.array([1, 2, 0], np.int32)
  got = np.asarray(matching.match_priors(gt, labels, p, iou_threshold=0.99, mode=mode))
  assert set(got[got >= 0]) == {0, 1}  # two near-identical small boxes, one prior each
  np.testing.assert_array_equal(got, ref.match_reference(gt, labels, p, 0.99, mode))


def test_per_gt_later_ground_truth_wins_a_shared_prior_but_bipartite_gives_both():
  p = np.array([[0.5, 0.5, 0.4, 0.4], [0.5, 0.5, 0.1, 0.1]], np.float32)  # big, tiny
  gt = np.array([[0.3, 0.3, 0.7, 0.7], [0.32, 0.32, 0.68, 0.68]], np.float32)  # both best: big
  labels = np.array([1, 2], np.int32)
  np.testing.assert_array_equal(matching.match_priors(gt, labels, p, 0.9, "per_gt"), [1, -1])
  np.testing.assert_array_equal(matching.match_priors(gt, labels, p, 0.9, "bipartite"), [0, 1])


def test_threshold_is_inclusive_and_ties_take_lowest_index():
  p = np.array([[0.5, 0.5, 0.2, 0.2], [0.5, 0.25, 0.2, 0.1]], np.float32)
  # gt 0 = prior 0 exactly; prior 1 ([0.4, 0.2, 0.6, 0.3]) has IoU exactly 0.5 with gt 1.
  gt = np.array([[0.4, 0.4, 0.6, 0.6], [0.4, 0.2, 0.6, 0.4], [0.4, 0.2, 0.6, 0.4]], np.float32)
  labels = np.array([1, 2, 3], np.int32)
  got = np.asarray(matching.match_priors(gt, labels, p, 0.5, "per_gt"))
  # gt 2 (identical to gt 1) is later and forces its best prior; the tie at threshold -> 0.5 ok.
  np.testing.assert_array_equal(got, ref.match_reference(gt, labels, p, 0.5, "per_gt"))


@pytest.mark.parametrize("mode", ["per_gt", "bipartite"])
def test_empty_image_is_all_background(mode):
  p = _small_priors()
  loc, cls = matching.encode_targets(np.zeros((5, 4), np.float32), np.zeros(5, np.int32), p,
                                     mode=mode)
  assert (np.asarray(cls) == 0).all() and (np.asarray(loc) == 0).all()


def test_degenerate_ground_truth_is_never_matched_and_targets_are_finite():
  p = _small_priors()
  gt = np.array([[0.5, 0.5, 0.5, 0.5], [0.6, 0.6, 0.2, 0.2]], np.float32)  # point, inverted
  loc, cls = matching.encode_targets(gt, np.array([1, 2], np.int32), p)
  assert (np.asarray(cls) == 0).all() and np.isfinite(np.asarray(loc)).all()


def test_encode_targets_reference_and_batch_vmap(rng):
  p = _small_priors()
  gt = random_boxes(rng, 2 * 6).reshape(2, 6, 4)
  labels = rng.integers(0, 4, size=(2, 6)).astype(np.int32)
  fn = jax.jit(jax.vmap(matching.encode_targets, in_axes=(0, 0, None)))
  loc, cls = fn(gt, labels, p)
  assert loc.shape == (2, len(p), 4) and cls.shape == (2, len(p)) and cls.dtype == jnp.int32
  for b in range(2):
    idx = ref.match_reference(gt[b], labels[b], p, 0.5, "per_gt")
    np.testing.assert_array_equal(cls[b], np.where(idx >= 0, labels[b][idx], 0))
    for i in np.flatnonzero(idx >= 0):
      np.testing.assert_allclose(loc[b, i], ref.encode_one(gt[b, idx[i]], p[i]), rtol=1e-4,
                                 atol=1e-4)
    assert (np.asarray(loc[b])[idx < 0] == 0).all()


def test_one_compilation_for_any_number_of_real_boxes():
  p = jnp.asarray(_small_priors())
  traces = []

  @jax.jit
  def targets(gt, labels):
    traces.append(1)
    return matching.encode_targets(gt, labels, p)

  for n in range(5):
    labels = np.zeros(4, np.int32)
    labels[:n] = 1
    targets(np.tile([[0.1, 0.1, 0.5, 0.5]], (4, 1)).astype(np.float32), labels)
  assert len(traces) == 1


def test_ssd300_decoded_targets_recover_ground_truth():
  p = priors.generate(priors.SSD300_VOC)
  gt = np.array([[0.1, 0.2, 0.45, 0.7], [0.5, 0.55, 0.95, 0.9]], np.float32)
  loc, cls = matching.encode_targets(gt, np.array([7, 3], np.int32), p)
  idx = np.asarray(matching.match_priors(gt, np.array([7, 3], np.int32), p))
  pos = idx >= 0
  assert pos.sum() > 2
  np.testing.assert_allclose(np.asarray(boxes.decode(loc, p))[pos], gt[idx[pos]], atol=1e-5)


@pytest.mark.parametrize("kwargs,match", [
    (dict(mode="hungarian"), "mode"),
    (dict(gt_labels=np.zeros(3, np.float32)), "integers"),
    (dict(gt_labels=np.zeros(2, np.int32)), "gt_labels"),
    (dict(priors=np.zeros((5, 3), np.float32)), "priors"),
])
def test_bad_arguments(kwargs, match):
  args = dict(gt_boxes=np.zeros((3, 4), np.float32), gt_labels=np.zeros(3, np.int32),
              priors=_small_priors())
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    matching.match_priors(**args)
