"""Tests of ssd_jax.photometric against a pixel-by-pixel reference (Python's ``colorsys`` for
HSV), TF's HSV kernels, and hand-computed cases."""

import colorsys

import jax
import numpy as np
import pytest
import tensorflow as tf

from ssd_jax import photometric

distort = jax.jit(photometric.distort)


def distort_ref(image, params, footprint):
  """One ``[H, W, 3]`` image, pixel by pixel, in the documented order (Caffe's)."""
  brightness, contrast, saturation, hue, contrast_last, order = params
  perm = photometric.CHANNEL_PERMUTATIONS[int(order)]
  x0, y0, x1, y1 = footprint
  out = image.astype(np.float64).copy()
  for y in range(y0, y1):
    for x in range(x0, x1):
      rgb = [min(max(v + brightness, 0.0), 255.0) for v in image[y, x].astype(np.float64)]
      if not contrast_last:
        rgb = [min(max(v * contrast, 0.0), 255.0) for v in rgb]
      h, s, v = colorsys.rgb_to_hsv(*(c / 255.0 for c in rgb))
      rgb = [c * 255.0 for c in colorsys.hsv_to_rgb((h + hue) % 1.0, min(max(s * saturation, 0.0),
                                                                          1.0), v)]
      if contrast_last:
        rgb = [min(max(v * contrast, 0.0), 255.0) for v in rgb]
      out[y, x] = np.round([rgb[perm[c]] for c in range(3)])
  return out


def random_params(rng, n):
  return np.stack([rng.uniform(-32, 32, n), rng.uniform(0.5, 1.5, n), rng.uniform(0.0, 1.6, n),
                   rng.uniform(-0.3, 0.3, n), rng.integers(0, 2, n), rng.integers(0, 6, n)],
                  axis=1).astype(np.float32)


def test_distort_matches_the_pixel_loop_reference():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (6, 9, 11, 3), dtype=np.uint8)
  images[0, :3] = 128  # grey pixels: no chroma, hue undefined
  images[1, :, :2] = [255, 0, 0]  # saturated primaries, and the wrap of the hue at red
  images[1, :, 2:4] = [0, 0, 255]
  images[2, :2] = 0  # black: no value
  params = random_params(rng, 6)
  footprints = np.array([[0, 0, 11, 9], [2, 1, 9, 8], [0, 3, 11, 9], [5, 0, 6, 1], [0, 0, 11, 9],
                         [3, 3, 3, 9]], np.int32)  # the last one empty
  got = np.asarray(distort(images, params, footprints))
  assert got.dtype == np.float32
  for image, p, f, out in zip(images, params, footprints, got):
    want = distort_ref(image, p, f)
    # Rounding of x.5 values can differ by one level between the float32 and float64 paths.
    assert np.abs(out - want).max() <= 1.0
    assert np.mean(out == want) > 0.97


def test_saturation_and_hue_match_tf_kernels():
  rng = np.random.default_rng(1)
  image = rng.uniform(0, 255, (16, 16, 3)).astype(np.float32)
  for saturation, hue in ((0.6, 0.05), (1.4, -0.05), (0.0, 0.3), (2.5, -0.45)):
    want = tf.image.adjust_hue(tf.image.adjust_saturation(image, saturation), hue).numpy()
    got = np.asarray(photometric.adjust_saturation_hue(image, saturation, hue))
    np.testing.assert_allclose(got, want, atol=2e-3)


def test_hand_computed_pixels():
  def one(rgb, params):
    image = np.array(rgb, np.uint8).reshape(1, 1, 1, 3)
    return np.asarray(distort(image, np.array([params], np.float32),
                              np.array([[0, 0, 1, 1]], np.int32)))[0, 0, 0]

  neutral = list(photometric.NEUTRAL)
  np.testing.assert_array_equal(one([250, 10, 0], [10, 1, 1, 0, 0, 0]), [255, 20, 10])
  np.testing.assert_array_equal(one([100, 200, 50], [0, 1.5, 1, 0, 0, 0]), [150, 255, 75])
  # Saturation 0: grey at the max channel.
  np.testing.assert_array_equal(one([200, 100, 50], [0, 1, 0, 0, 0, 0]), [200, 200, 200])
  # Contrast 2 and a hue of +60 degrees: the order matters through the clip. First:
  # (255, 200, 0), hue sextant 200/255 + 1, so R = 255 - 255 * 200/255 = 55. Last: (150, 250, 0),
  # then doubled and clipped.
  np.testing.assert_array_equal(one([250, 100, 0], [0, 2, 1, 1 / 6, 0, 0]), [55, 255, 0])
  np.testing.assert_array_equal(one([250, 100, 0], [0, 2, 1, 1 / 6, 1, 0]), [255, 255, 0])
  # A third of a turn: red -> green -> blue.
  np.testing.assert_array_equal(one([255, 0, 0], [0, 1, 1, 1 / 3, 0, 0]), [0, 255, 0])
  np.testing.assert_array_equal(one([255, 0, 0], [0, 1, 1, -1 / 3, 0, 0]), [0, 0, 255])
  # Channel order 5 is (2, 1, 0): BGR.
  np.testing.assert_array_equal(one([10, 20, 30], neutral[:5] + [5]), [30, 20, 10])
  np.testing.assert_array_equal(one([10, 20, 30], neutral), [10, 20, 30])


def test_neutral_params_are_the_identity():
  images = np.random.default_rng(2).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
  params = np.tile(np.array(photometric.NEUTRAL, np.float32), (3, 1))
  got = distort(images, params, np.tile(np.array([[0, 0, 8, 8]], np.int32), (3, 1)))
  np.testing.assert_array_equal(np.asarray(got), images)


@pytest.mark.parametrize("footprint", [[2, 1, 6, 7], [0, 0, 8, 8], [4, 4, 4, 8]])
def test_pixels_outside_the_footprint_are_untouched(footprint):
  images = np.random.default_rng(3).integers(0, 256, (1, 8, 8, 3), dtype=np.uint8)
  params = np.array([[40, 1.3, 0.5, 0.1, 0, 3]], np.float32)
  got = np.asarray(distort(images, params, np.array([footprint], np.int32)))[0]
  x0, y0, x1, y1 = footprint
  inside = np.zeros((8, 8), bool)
  inside[y0:y1, x0:x1] = True
  np.testing.assert_array_equal(got[~inside], images[0][~inside])
  assert np.all(np.any(got[inside] != images[0][inside], axis=-1))
  np.testing.assert_array_equal(np.asarray(photometric.footprint_mask(
      np.array([footprint]), 8, 8))[0], inside)
