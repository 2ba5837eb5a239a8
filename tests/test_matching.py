"""ssd_jax.matching against loop-based references of both published matching algorithms."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssd_jax import boxes, matching, priors
from tests import reference_ssd as ref
from tests.conftest import random_boxes

# The functions under test, jitted as the train step runs them: one compilation per call
# signature, where calling them op by op compiles one program per jnp operation (~470 here).
match_priors = jax.jit(matching.match_priors, static_argnames="mode")
encode_targets = jax.jit(matching.encode_targets, static_argnames="mode")


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
  got = np.asarray(match_priors(gt, labels, p, iou_threshold=0.99, mode=mode))
  assert set(got[got >= 0]) == {0, 1}  # two near-identical small boxes, one prior each
  np.testing.assert_array_equal(got, ref.match_reference(gt, labels, p, 0.99, mode))


def test_per_gt_later_ground_truth_wins_a_shared_prior_but_bipartite_gives_both():
  p = np.array([[0.5, 0.5, 0.4, 0.4], [0.5, 0.5, 0.1, 0.1]], np.float32)  # big, tiny
  gt = np.array([[0.3, 0.3, 0.7, 0.7], [0.32, 0.32, 0.68, 0.68]], np.float32)  # both best: big
  labels = np.array([1, 2], np.int32)
  np.testing.assert_array_equal(match_priors(gt, labels, p, 0.9, "per_gt"), [1, -1])
  np.testing.assert_array_equal(match_priors(gt, labels, p, 0.9, "bipartite"), [0, 1])


def test_threshold_is_inclusive_and_ties_take_lowest_index():
  p = np.array([[0.5, 0.5, 0.2, 0.2], [0.5, 0.25, 0.2, 0.1]], np.float32)
  # gt 0 = prior 0 exactly; prior 1 ([0.4, 0.2, 0.6, 0.3]) has IoU exactly 0.5 with gt 1.
  gt = np.array([[0.4, 0.4, 0.6, 0.6], [0.4, 0.2, 0.6, 0.4], [0.4, 0.2, 0.6, 0.4]], np.float32)
  labels = np.array([1, 2, 3], np.int32)
  got = np.asarray(match_priors(gt, labels, p, 0.5, "per_gt"))
  # gt 2 (identical to gt 1) is later and forces its best prior; the tie at threshold -> 0.5 ok.
  np.testing.assert_array_equal(got, ref.match_reference(gt, labels, p, 0.5, "per_gt"))


@pytest.mark.parametrize("mode", ["per_gt", "bipartite"])
def test_empty_image_is_all_background(mode):
  p = _small_priors()
  loc, cls = encode_targets(np.zeros((5, 4), np.float32), np.zeros(5, np.int32), p,
                                     mode=mode)
  assert (np.asarray(cls) == 0).all() and (np.asarray(loc) == 0).all()


def test_degenerate_ground_truth_is_never_matched_and_targets_are_finite():
  p = _small_priors()
  gt = np.array([[0.5, 0.5, 0.5, 0.5], [0.6, 0.6, 0.2, 0.2]], np.float32)  # point, inverted
  loc, cls = encode_targets(gt, np.array([1, 2], np.int32), p)
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
    return encode_targets(gt, labels, p)

  for n in range(5):
    labels = np.zeros(4, np.int32)
    labels[:n] = 1
    targets(np.tile([[0.1, 0.1, 0.5, 0.5]], (4, 1)).astype(np.float32), labels)
  assert len(traces) == 1


def test_ssd300_decoded_targets_recover_ground_truth():
  p = priors.generate(priors.SSD300_VOC)
  gt = np.array([[0.1, 0.2, 0.45, 0.7], [0.5, 0.55, 0.95, 0.9]], np.float32)
  loc, cls = encode_targets(gt, np.array([7, 3], np.int32), p)
  idx = np.asarray(match_priors(gt, np.array([7, 3], np.int32), p))
  pos = idx >= 0
  assert pos.sum() > 2
  np.testing.assert_allclose(np.asarray(boxes.decode(loc, p))[pos], gt[idx[pos]], atol=1e-5)


# ------------------------------------------------------------------------------------------------
# Crowd boxes: left out of matching; background priors on them are ignored (-2 index, -1 class).
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["per_gt", "bipartite"])
@pytest.mark.parametrize("seed", range(6))
def test_crowd_match_and_targets_agree_with_reference(mode, seed):
  rng = np.random.default_rng(100 + seed)
  p = _small_priors()
  b, m = 3, 8
  gt = random_boxes(rng, b * m).reshape(b, m, 4)
  labels = rng.integers(1, 5, size=(b, m)).astype(np.int32)
  labels[rng.random((b, m)) < 0.25] = 0
  crowd = rng.random((b, m)) < 0.4  # Also on some padding rows, which must stay padding.
  # Row 0 of every image: a crowd box on a prior, whose priors then are mostly ignored.
  gt[:, 0] = np.asarray(boxes.cxcywh_to_xyxy(p[rng.integers(0, len(p), b)]))
  labels[:, 0], crowd[:, 0] = 1, True
  fn = jax.jit(jax.vmap(functools.partial(matching.encode_targets, priors=p, mode=mode)))
  loc, cls = fn(gt, labels, crowd=crowd)
  index = jax.jit(jax.vmap(functools.partial(matching.match_priors, priors=p, mode=mode)))(
      gt, labels, crowd=crowd)
  assert cls.dtype == jnp.int32
  for i in range(b):
    want = ref.match_reference(gt[i], labels[i], p, 0.5, mode, crowd=crowd[i])
    np.testing.assert_array_equal(index[i], want)
    np.testing.assert_array_equal(cls[i], ref.targets_reference(labels[i], want))
    assert (np.asarray(loc[i])[want < 0] == 0).all()
  assert (np.asarray(cls) == -1).any() and (np.asarray(cls) > 0).any()  # A non-trivial case.


@pytest.mark.parametrize("mode", ["per_gt", "bipartite"])
def test_crowd_hand_computed(mode):
  # Priors (xyxy): P0 [.4,.4,.6,.6], P1 [.1,.1,.3,.3], P2 [.7,.7,.9,.9], P3 [.4,.1,.6,.3].
  p = np.array([[0.5, 0.5, 0.2, 0.2], [0.2, 0.2, 0.2, 0.2], [0.8, 0.8, 0.2, 0.2],
                [0.5, 0.2, 0.2, 0.2]], np.float32)
  gt = np.array([
      [0.1, 0.1, 0.3, 0.3],    # 0 real: = P1.
      [0.4, 0.1, 0.6, 0.16],   # 1 real: IoU 0.3 with P3, its best prior (forced).
      [0.4, 0.4, 0.6, 0.52],   # 2 crowd: IoU 0.6 with P0, its best prior -> P0 ignored.
      [0.1, 0.1, 0.3, 0.3],    # 3 crowd: = P1, which stays gt 0's positive.
      [0.7, 0.7, 0.9, 0.76],   # 4 crowd: IoU 0.3 with P2, its best prior: P2 stays background.
      [0.4, 0.1, 0.6, 0.3],    # 5 crowd: = P3, a later box, yet does not take P3 from gt 1.
      [0.0, 0.0, 0.0, 0.0]], np.float32)
  labels = np.array([1, 2, 3, 4, 1, 3, 0], np.int32)
  crowd = np.array([False, False, True, True, True, True, False])
  index = match_priors(gt, labels, p, 0.5, mode, crowd=crowd)
  np.testing.assert_array_equal(index, [matching.IGNORE_INDEX, 0, -1, 1])
  np.testing.assert_array_equal(index, ref.match_reference(gt, labels, p, 0.5, mode, crowd))
  loc, cls = encode_targets(gt, labels, p, mode=mode, crowd=crowd)
  np.testing.assert_array_equal(cls, [matching.IGNORE_CLASS, 1, 0, 2])
  assert (np.asarray(loc)[[0, 2]] == 0).all()
  # Without the flags the same boxes are objects: gt 2 takes P0, gt 4 P2 and gt 5 P3 from gt 1
  # (per_gt also gives P1 to the later gt 3).
  np.testing.assert_array_equal(encode_targets(gt, labels, p, mode=mode)[1],
                                [3, 4, 1, 3] if mode == "per_gt" else [3, 1, 1, 3])


@pytest.mark.parametrize("mode", ["per_gt", "bipartite"])
def test_no_crowd_flags_change_nothing(mode, rng):
  p = _small_priors()
  gt = random_boxes(rng, 6)
  labels = rng.integers(0, 4, size=6).astype(np.int32)
  plain = encode_targets(gt, labels, p, mode=mode)
  flagged = encode_targets(gt, labels, p, mode=mode, crowd=np.zeros(6, bool))
  for a, b in zip(plain, flagged):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kwargs,match", [
    (dict(mode="hungarian"), "mode"),
    (dict(gt_labels=np.zeros(3, np.float32)), "integers"),
    (dict(gt_labels=np.zeros(2, np.int32)), "gt_labels"),
    (dict(priors=np.zeros((5, 3), np.float32)), "priors"),
    (dict(crowd=np.zeros(2, bool)), "crowd"),
])
def test_bad_arguments(kwargs, match):
  args = dict(gt_boxes=np.zeros((3, 4), np.float32), gt_labels=np.zeros(3, np.int32),
              priors=_small_priors())
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    match_priors(**args)
