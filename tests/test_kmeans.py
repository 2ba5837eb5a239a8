"""Tests of ssd_jax.priors.kmeans against loop-based NumPy references and hand-computed cases."""

import math

import numpy as np
import pytest

from ssd_jax import priors as prior_lib
from ssd_jax.priors import kmeans


# ------------------------------------------------------------------------------------------------
# Loop-based references.
# ------------------------------------------------------------------------------------------------


def ref_centered_iou(wa, ha, wb, hb):
  inter = min(wa, wb) * min(ha, hb)
  return inter / (wa * ha + wb * hb - inter)


def ref_lloyd_step(wh, centroids):
  """One assignment + mean update with loops; returns the new centroids."""
  members = [[] for _ in centroids]
  for w, h in wh:
    dists = [1 - ref_centered_iou(w, h, cw, ch) for cw, ch in centroids]
    members[int(np.argmin(dists))].append((w, h))
  return np.array([np.mean(m, axis=0) for m in members])


# ------------------------------------------------------------------------------------------------
# Centred IoU and k-means.
# ------------------------------------------------------------------------------------------------


MODES = np.array([[0.05, 0.1], [0.3, 0.15], [0.4, 0.8]])


def mode_samples(seed, per_mode=200, noise=0.05):
  rng = np.random.default_rng(seed)
  return np.concatenate([m * np.exp(rng.normal(0, noise, (per_mode, 2))) for m in MODES])


def test_centered_iou_and_mean_best_iou_match_loops():
  rng = np.random.default_rng(2)
  a, b = rng.uniform(0.01, 1, (13, 2)), rng.uniform(0.01, 1, (4, 2))
  expected = [[ref_centered_iou(*x, *y) for y in b] for x in a]
  np.testing.assert_allclose(kmeans.centered_iou(a, b), expected, rtol=1e-12)
  assert kmeans.mean_best_iou(a, b) == pytest.approx(np.mean([max(r) for r in expected]))


@pytest.mark.parametrize("init,seed", [("kmeans++", 0), ("kmeans++", 3), ("random", 1)])
def test_kmeans_recovers_modes(init, seed):
  anchors = kmeans.fit_anchors(mode_samples(seed), 3, seed=seed, init=init)
  assert anchors.shape == (3, 2)
  np.testing.assert_allclose(anchors, MODES, rtol=0.03)  # MODES are in ascending area


def test_kmeans_result_is_a_fixed_point_of_the_loop_reference():
  wh = np.random.default_rng(4).uniform(0.02, 0.7, (150, 2))
  anchors = kmeans.fit_anchors(wh, 5, seed=0)
  assert np.all(np.diff(anchors.prod(1)) > 0)  # sorted by area
  np.testing.assert_allclose(ref_lloyd_step(wh, anchors), anchors, rtol=1e-5)
  np.testing.assert_array_equal(kmeans.fit_anchors(wh, 5, seed=0), anchors)


def test_kmeans_reseeds_an_emptied_cluster():
  # With this data and seed the "random" init lets a cluster run empty after one update.
  wh = np.array([[0.34, 0.36], [0.23, 0.36], [0.33, 0.29], [0.45, 0.5], [0.15, 0.46],
                 [0.31, 0.36], [0.31, 0.46], [0.42, 0.4]])
  anchors = kmeans.fit_anchors(wh, 4, seed=447, init="random")
  assert len(np.unique(anchors, axis=0)) == 4
  np.testing.assert_allclose(ref_lloyd_step(wh, anchors), anchors, rtol=1e-5)


def test_kmeans_invalid_inputs():
  wh = mode_samples(0, per_mode=3)
  for bad_wh, k in ((wh, 10), (wh, 0), (np.zeros((0, 2)), 1), (np.ones((4, 3)), 1),
                    (np.concatenate([wh, [[np.nan, 0.1]]]), 2), (np.array([[0.1, 0.0]]), 1),
                    (np.array([[0.1, 0.2]] * 5), 2)):  # 5 boxes but one distinct shape
    with pytest.raises(ValueError):
      kmeans.fit_anchors(bad_wh, k)
  with pytest.raises(ValueError, match="init"):
    kmeans.fit_anchors(wh, 2, init="farthest")


# ------------------------------------------------------------------------------------------------
# Specs from anchors.
# ------------------------------------------------------------------------------------------------


def _layer_sizes_from_generate(spec):
  """Per layer, the set of (w, h) of all its priors (read straight off generate())."""
  priors = prior_lib.generate(spec)
  out, start = [], 0
  for n in spec.boxes_per_layer:
    out.append(np.unique(np.round(priors[start:start + n, 2:], 6), axis=0))
    start += n
  return out


def _same_rows(a, b, rtol=1e-5):
  a, b = np.asarray(a), np.asarray(b)
  return a.shape == b.shape and np.allclose(a[np.lexsort(a.T)], b[np.lexsort(b.T)], rtol=rtol)


def test_spec_from_anchors_exact_when_layer_areas_match():
  r2, r3 = math.sqrt(2), math.sqrt(3)
  fine = [[0.1, 0.1], [0.1 * r2, 0.1 / r2], [0.1 / r3, 0.1 * r3]]  # one area, with a square
  coarse = [[0.3 * r2, 0.3 / r2]]  # no square anchor: the layer gets an extra (0.3, 0.3)
  anchors = np.array(fine + coarse)[[3, 1, 0, 2]]
  spec = kmeans.spec_from_anchors(anchors, (4, 2), image_size=300, layer_names=("x", "y"),
                                  anchors_per_layer=(3, 1))
  assert spec.boxes_per_cell == (3, 2) and spec.num_priors == 16 * 3 + 4 * 2
  assert spec.layer_names == ("x", "y") and spec.steps == (75, 150)
  sizes = _layer_sizes_from_generate(spec)
  assert _same_rows(sizes[0], fine)
  assert _same_rows(sizes[1], coarse + [[0.3, 0.3]])
  for got, want in zip(kmeans.cell_box_sizes(spec), sizes):
    assert _same_rows(got, want)
  # Layers listed coarse first: the small anchors still go to the finer (4 x 4) map.
  flipped = kmeans.spec_from_anchors(anchors, (2, 4), anchors_per_layer=(1, 3))
  assert flipped.boxes_per_cell == (2, 3)
  assert _same_rows(_layer_sizes_from_generate(flipped)[1], fine)


def test_spec_from_anchors_geometric_mean_approximation():
  # Sizes sqrt(wh) 0.1 and 0.2 -> s = sqrt(0.02); the square anchor folds into the square box.
  spec = kmeans.spec_from_anchors(np.array([[0.1, 0.1], [0.4, 0.1]]), (3,), image_size=1.0)
  s = math.sqrt(0.02)
  assert spec.min_sizes[0] == pytest.approx(s) and spec.aspect_ratios == ((4.0,),)
  assert _same_rows(_layer_sizes_from_generate(spec)[0], [[s, s], [2 * s, s / 2]])


def test_spec_from_kmeans_reproduces_the_clusters():
  anchors = kmeans.fit_anchors(mode_samples(5), 3, seed=0)
  spec = kmeans.spec_from_anchors(anchors, (8, 4, 2))
  for k, layer_sizes in enumerate(_layer_sizes_from_generate(spec)):
    # One anchor per layer: the square of its size plus the anchor itself, exactly.
    hits = np.isclose(layer_sizes, anchors[k], rtol=1e-5).all(1)
    assert hits.sum() == 1 and len(layer_sizes) == 2
    np.testing.assert_allclose(layer_sizes[hits][0], MODES[k], rtol=0.03)


def test_spec_from_anchors_invalid_inputs():
  anchors = MODES
  with pytest.raises(ValueError, match="every layer"):
    kmeans.spec_from_anchors(anchors, (8, 4, 2, 1))
  with pytest.raises(ValueError, match="anchors_per_layer"):
    kmeans.spec_from_anchors(anchors, (8, 4), anchors_per_layer=(1, 1))
  with pytest.raises(ValueError, match="anchors_per_layer"):
    kmeans.spec_from_anchors(anchors, (8, 4), anchors_per_layer=(3, 0))
  with pytest.raises(ValueError, match="finite"):
    kmeans.spec_from_anchors(np.array([[0.1, np.nan]]), (8,))


def test_spec_from_anchors_keep_counts_gives_one_box_per_anchor():
  rng = np.random.default_rng(7)
  for trial in range(20):
    counts = tuple(int(c) for c in rng.integers(1, 6, 3))
    anchors = rng.uniform(0.02, 0.6, (sum(counts), 2))
    # Squares exactly (w == h, ratio 1, which a PriorSpec ratio cannot be) and nearly.
    squares = rng.choice(len(anchors), min(4, len(anchors)), replace=False)
    anchors[squares[:2], 1] = anchors[squares[:2], 0]
    anchors[squares[2:], 1] = anchors[squares[2:], 0] * 1.01
    spec = kmeans.spec_from_anchors(anchors, (8, 4, 2), anchors_per_layer=counts,
                                    keep_counts=True)
    assert spec.boxes_per_cell == counts, trial
  # Folding (the default) merges near-square anchors into the one square instead.
  folded = kmeans.spec_from_anchors(np.array([[0.1, 0.1], [0.2, 0.2], [0.3, 0.3]]), (4,))
  assert folded.boxes_per_cell == (1,)


def test_spec_from_anchors_keep_counts_is_exact_for_a_square_two_squares_and_ratios():
  r2 = math.sqrt(2)
  fine = [[0.1, 0.1], [0.1 * r2, 0.1 / r2], [0.1 / r2, 0.1 * r2], [0.13, 0.13]]  # 2 squares
  coarse = [[0.3 * r2, 0.3 / r2], [0.3 / 2, 0.3 * 2]]  # no square: the squarest one becomes it
  spec = kmeans.spec_from_anchors(np.array(coarse + fine), (4, 2), anchors_per_layer=(4, 2),
                                  keep_counts=True)
  assert spec.boxes_per_cell == (4, 2) and spec.max_sizes[1] is None
  got = kmeans.cell_box_sizes(spec)
  assert _same_rows(got[0], fine)
  assert spec.min_sizes[1] == pytest.approx(300 * 0.3) and spec.aspect_ratios[1] == (0.25,)
  # The square stands for the ratio-2 anchor: area kept, ratio not (the one approximation here).
  assert _same_rows(got[1], [[0.3, 0.3], [0.15, 0.6]])
