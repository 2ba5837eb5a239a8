"""Caffe's photometric distortion (``DistortImage``), applied in the train step on the device.

The input pipeline draws each example's random values (:func:`ssd_jax.data.augment.
photometric_params`) and the train step applies them to the whole batch at once
(:func:`distort`): one fused elementwise XLA computation, nearly free on an accelerator, where on
the host TF's HSV kernels cost ~5 ms of a core per 300x300 image and op. Every op is per pixel, so
applying them after the crop, resize and flip rather than first (Caffe's order) changes nothing
but the interpolation of clipped values and the rounding.

An example's values are a float32 ``[NUM_PARAMS]`` row (neutral values where an op is not drawn):
  0. brightness: added to every channel (pixel units, 0..255); 0 is off.
  1. contrast: every channel multiplied by it (Caffe's ``convertTo``, no mean centring); 1 is off.
  2. saturation: HSV saturation multiplied by it (and clipped to [0, 1]); 1 is off.
  3. hue: added to the HSV hue, in turns (1 = 360 degrees); 0 is off.
  4. contrast_last: 1 if contrast comes after saturation and hue, 0 if before.
  5. channel_order: index into :data:`CHANNEL_PERMUTATIONS` of the output channel order; 0 is RGB.
Values are clipped to [0, 255] after every op, as Caffe's uint8 images are, and rounded at the
end. Pixels outside the example's ``footprint`` (the zoom-out's fill colour) are left untouched,
as in Caffe, which distorts before the zoom-out.
"""

import itertools

import jax.numpy as jnp

NEUTRAL = (0.0, 1.0, 1.0, 0.0, 0.0, 0.0)
NUM_PARAMS = len(NEUTRAL)
# The six channel orders a random channel swap chooses from; the first is the identity.
CHANNEL_PERMUTATIONS = tuple(itertools.permutations(range(3)))


def _clip(x: jnp.ndarray) -> jnp.ndarray:
  return jnp.clip(x, 0.0, 255.0)


def _mod6(x: jnp.ndarray) -> jnp.ndarray:
  # Not jnp.mod: XLA's CPU backend calls fmod per element, which is not vectorized.
  return x - 6.0 * jnp.floor(x / 6.0)


def adjust_saturation_hue(rgb: jnp.ndarray, saturation: jnp.ndarray,
                          hue: jnp.ndarray) -> jnp.ndarray:
  """HSV saturation times ``saturation`` (clipped to [0, 1]) and hue plus ``hue`` turns, in one
  round trip through HSV (what ``tf.image.adjust_saturation`` then ``adjust_hue`` give).

  Args:
    rgb: float ``[..., 3]``, any non-negative range (HSV is scale-invariant).
    saturation, hue: float, broadcastable to ``rgb[..., 0]``.

  Returns:
    float ``[..., 3]``, each channel within ``[0, V]``, ``V`` the largest channel of its input
    pixel (so no clip is needed after it).
  """
  r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
  value = jnp.maximum(jnp.maximum(r, g), b)
  chroma = value - jnp.minimum(jnp.minimum(r, g), b)
  safe = jnp.where(chroma > 0, chroma, 1.0)
  # Hue in sextants [0, 6): which channel is the largest decides the sector.
  sextant = jnp.where(value == r, (g - b) / safe,
                      jnp.where(value == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
  sextant = jnp.where(chroma > 0, sextant, 0.0)
  sextant = _mod6(sextant + 6.0 * hue)
  sat = jnp.clip(jnp.where(value > 0, chroma / jnp.where(value > 0, value, 1.0), 0.0)
                 * saturation, 0.0, 1.0)

  # HSV -> RGB without branches: channel n is V - V S clip(min(k, 4 - k), 0, 1) with
  # k = (n + H) mod 6 and n = 5, 3, 1 for R, G, B.
  def channel(n):
    k = _mod6(n + sextant)
    return value - value * sat * jnp.clip(jnp.minimum(k, 4.0 - k), 0.0, 1.0)

  return jnp.stack([channel(5.0), channel(3.0), channel(1.0)], axis=-1)


def footprint_mask(footprint: jnp.ndarray, height: int, width: int) -> jnp.ndarray:
  """bool ``[B, height, width]``: inside each ``[B, 4]`` int pixel xyxy ``[x0, x1) x [y0, y1)``."""
  ys = jnp.arange(height)[None, :, None]
  xs = jnp.arange(width)[None, None, :]
  f = footprint[:, :, None, None]
  return (xs >= f[:, 0]) & (xs < f[:, 2]) & (ys >= f[:, 1]) & (ys < f[:, 3])


def distort(images: jnp.ndarray, params: jnp.ndarray, footprint: jnp.ndarray) -> jnp.ndarray:
  """The photometric distortion of a batch (see the module docstring).

  Args:
    images: ``[B, H, W, 3]`` RGB, values 0..255 (uint8 or float).
    params: float32 ``[B, NUM_PARAMS]``, each example's values.
    footprint: int32 ``[B, 4]`` pixel xyxy of the image's part of each example; pixels outside
      are returned unchanged.

  Returns:
    float32 ``[B, H, W, 3]``, whole numbers in [0, 255].
  """
  original = images.astype(jnp.float32)
  per_example = lambda i: params[:, i, None, None, None].astype(jnp.float32)
  brightness, contrast, saturation, hue, contrast_last = (per_example(i) for i in range(5))
  last = contrast_last > 0.5
  x = _clip(original + brightness)
  x = jnp.where(last, x, _clip(x * contrast))
  x = adjust_saturation_hue(x, saturation[..., 0], hue[..., 0])
  x = jnp.where(last, _clip(x * contrast), x)
  # Output channel c is input channel order[c]: a select per channel, which XLA fuses.
  order = jnp.asarray(CHANNEL_PERMUTATIONS)[params[:, 5].astype(jnp.int32)][:, None, None, :]
  x = jnp.stack([jnp.where(order[..., c] == 0, x[..., 0],
                           jnp.where(order[..., c] == 1, x[..., 1], x[..., 2]))
                 for c in range(3)], axis=-1)
  inside = footprint_mask(footprint, images.shape[1], images.shape[2])[..., None]
  return jnp.where(inside, jnp.round(x), original)
