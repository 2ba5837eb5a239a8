"""ssd_jax.boxes against the loop-based references and hand-computed cases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssd_jax import boxes
from tests import reference_ssd as ref
from tests.conftest import random_boxes


def test_format_round_trip(rng):
  b = random_boxes(rng, 100, degenerate_fraction=0.0)
  np.testing.assert_allclose(boxes.cxcywh_to_xyxy(boxes.xyxy_to_cxcywh(b)), b, atol=1e-6)
  np.testing.assert_allclose(boxes.xyxy_to_cxcywh(np.array([0.1, 0.2, 0.5, 0.8])),
                             [0.3, 0.5, 0.4, 0.6], atol=1e-7)


def test_area_is_never_negative():
  np.testing.assert_allclose(boxes.area(np.array([[0, 0, 2, 3], [1, 1, 0, 3], [1, 1, 1, 1.]])),
                             [6, 0, 0])


def test_iou_hand_computed():
  a = np.array([[0, 0, 2, 2]], np.float32)
  b = np.array([[1, 1, 3, 3], [0, 0, 2, 2], [2, 2, 3, 3], [0, 0, 1, 2]], np.float32)
  # Overlap 1 / union 7; identical; touching corners; half contained.
  np.testing.assert_allclose(boxes.iou(a, b), [[1 / 7, 1, 0, 0.5]], rtol=1e-6)


def test_iou_matches_reference_on_random_and_degenerate_boxes(rng):
  a, b = random_boxes(rng, 37), random_boxes(rng, 53)
  got = np.asarray(jax.jit(boxes.iou)(a, b))
  assert np.isfinite(got).all()
  np.testing.assert_allclose(got, ref.iou_matrix(a, b), atol=1e-5)


def test_iou_batched_leading_axes(rng):
  a = random_boxes(rng, 2 * 5).reshape(2, 5, 4)
  b = random_boxes(rng, 2 * 7).reshape(2, 7, 4)
  got = boxes.iou(a, b)
  assert got.shape == (2, 5, 7)
  for i in range(2):
    np.testing.assert_allclose(got[i], ref.iou_matrix(a[i], b[i]), atol=1e-5)


def test_iou_of_degenerate_pairs_is_zero_with_finite_gradient():
  point = jnp.array([[0.5, 0.5, 0.5, 0.5]])
  assert float(boxes.iou(point, point)[0, 0]) == 0.0
  grad = jax.grad(lambda x: boxes.iou(x, x).sum())(point)
  assert np.isfinite(np.asarray(grad)).all()


def test_encode_decode_match_reference(rng):
  priors = np.abs(rng.uniform(0.05, 0.9, size=(64, 4))).astype(np.float32)
  gt = random_boxes(rng, 64)
  enc = np.asarray(boxes.encode(gt, priors))
  assert np.isfinite(enc).all()
  want = np.array([ref.encode_one(g, p) for g, p in zip(gt, priors)])
  np.testing.assert_allclose(enc, want, rtol=1e-4, atol=1e-4)
  offsets = rng.normal(size=(64, 4)).astype(np.float32)
  np.testing.assert_allclose(boxes.decode(offsets, priors),
                             [ref.decode_one(t, p) for t, p in zip(offsets, priors)], atol=1e-5)


def test_encode_hand_computed_caffe_case():
  # g = (0.2, 0.2)-(0.6, 0.4): centre (0.4, 0.3), size (0.4, 0.2); prior centre (0.5, 0.5), 0.2^2.
  t = boxes.encode(np.array([[0.2, 0.2, 0.6, 0.4]]), np.array([[0.5, 0.5, 0.2, 0.2]]))
  np.testing.assert_allclose(t, [[(0.4 - 0.5) / (0.1 * 0.2), (0.3 - 0.5) / (0.1 * 0.2),
                                  np.log(2.0) / 0.2, 0.0]], rtol=1e-5)


def test_decode_inverts_encode(rng):
  priors = boxes.xyxy_to_cxcywh(random_boxes(rng, 200, degenerate_fraction=0.0, outside=False))
  gt = random_boxes(rng, 200, degenerate_fraction=0.0)
  np.testing.assert_allclose(boxes.decode(boxes.encode(gt, priors), priors), gt, atol=1e-5)


@pytest.mark.parametrize("offset", [1e3, 1e30, -1e30])
def test_decode_is_finite_for_wild_offsets(offset):
  out = boxes.decode(jnp.full((1, 4), offset), jnp.array([[0.5, 0.5, 0.1, 0.1]]))
  assert np.isfinite(np.asarray(out)).all()
