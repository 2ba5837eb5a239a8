"""SSD training augmentation (the Caffe recipe) as graph-mode TensorFlow ops for ``tf.data``.

An *example* is a dict with ``image`` uint8 ``[H, W, 3]`` RGB, ``boxes`` float32 ``[N, 4]``
normalized xyxy, and optional per-object fields ``labels`` int32 ``[N]``, ``difficult`` and
``crowd`` bool ``[N]`` and ``area`` float32 ``[N]`` (other keys, e.g. ``image_id``, pass through
untouched). Every step takes and returns such a dict; whenever objects are dropped, all per-object
fields are dropped together. ``area`` (pixels of the original image) is carried along unchanged:
it stays the original object's area, not that of the cropped or resized box.

Randomness is stateless: each random step takes a seed, an int64 ``[2]`` tensor, and draws with
``tf.random.stateless_*`` ops, so the same seed always gives the same output. The input pipeline
derives one seed per example from (global seed, example index), which makes training resumable.

The training recipe (:func:`train_preprocess`) follows the Caffe SSD release (``ssd_pascal.py``):
  1. photometric distortion: its random values are drawn here (:func:`photometric_params`) and
     applied to the batch in the train step (:func:`ssd_jax.photometric.distort`), where XLA
     fuses the per-pixel ops on the accelerator; on the host, TF's HSV kernels were the largest
     cost of the input pipeline. Per-pixel ops commute with the geometric steps (up to the
     interpolation of clipped values), and they skip the zoom-out's fill, as in Caffe,
  2. zoom-out onto a mean-coloured canvas (:func:`random_expand_window`),
  3. the IoU-constrained patch sampler (:func:`sample_patch`) and crop
     (:func:`random_crop_window`),
  4. resize to ``image_size x image_size``, uint8 output. Steps 2 and 3 only move a window over
     the image; :func:`resize_window` then warps the image's part of it straight to the output
     (the zoom-out canvas is never made),
  5. horizontal flip (:func:`random_flip`); done after the resize because bilinear resizing with
     half-pixel centres commutes with mirroring, and flipping 300x300 pixels is cheaper,
  6. dropping boxes that became degenerate (:func:`drop_degenerate`).
Pixel values stay uint8 ``[0, 255]`` (half the host->device bytes of float32); the model
normalizes them.
"""

import dataclasses
import functools
from typing import Any, Optional, Sequence, Union

import tensorflow as tf

from ssd_jax import photometric, pixel_stats

Example = dict[str, Any]
Seed = Union[tf.Tensor, Sequence[int]]

# Per-object fields, aligned with ``boxes`` along axis 0.
OBJECT_KEYS = ("boxes", "labels", "difficult", "crowd", "area")
# Interpolations Caffe picks from at random when resizing (LINEAR, AREA, NEAREST, CUBIC, LANCZOS4).
_RANDOM_INTERPOLATIONS = ("bilinear", "area", "nearest", "bicubic", "lanczos3")
# The others average pixels with non-negative weights, so they stay within [0, 255].
_OVERSHOOTING_INTERPOLATIONS = ("bicubic", "lanczos3")


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  """Knobs of :func:`train_preprocess`; the defaults are the Caffe SSD recipe.

  Build one from an ``ml_collections.ConfigDict`` with ``AugmentConfig(**cfg)``; :meth:`none`
  turns every random step off (the "no data augmentation" ablation of the paper's Table 2).

  Attributes:
    photometric: draw :func:`photometric_params` (the train step applies them).
    expand: apply :func:`random_expand_window` (zoom-out).
    crop: apply the IoU-constrained patch sampler and crop.
    flip: apply :func:`random_flip`.
    channel_swap: randomly permute RGB channels as the last photometric step (ssd.pytorch's
      ``RandomLightingNoise``). Off by default, as in Caffe's ``ssd_pascal.py``
      (``random_order_prob: 0``).
    random_interpolation: resize with an interpolation chosen uniformly among bilinear, area,
      nearest, bicubic and Lanczos (Caffe's ``interp_mode`` list). Off by default: always
      bilinear, as ssd.pytorch does, which is cheaper.
    distort_prob: probability of each photometric op (brightness, contrast, saturation, hue).
    brightness_delta: brightness shift drawn from ``[-delta, delta]`` (pixel units, 0..255).
    contrast_range: contrast factor range (pixels are multiplied by it, as in Caffe).
    saturation_range: saturation factor range.
    hue_delta: hue shift drawn from ``[-delta, delta]`` degrees.
    channel_swap_prob: probability of a channel swap when ``channel_swap`` is on.
    expand_prob: probability of zoom-out.
    max_expand_ratio: zoom-out canvas side is ``ratio * side`` with ratio in ``[1, max]``.
    fill_rgb: canvas colour of the zoom-out (RGB, 0..255); by default Caffe's mean pixel, as in
      Caffe SSD.
    min_ious: one patch sampler per entry: a patch must have IoU >= this with some object; 0.0 is
      Caffe's unconstrained "any patch" sampler. The whole image is always a candidate too.
    num_trials: patches tried per sampler (the first valid one is that sampler's candidate).
    scale_range: patch side scale range (fraction of the image, before the aspect ratio).
    aspect_ratio_range: patch aspect ratio ``w / h`` range (in normalized coordinates).
    flip_prob: probability of a horizontal flip.
    min_box_size: boxes whose normalized width or height ends below this are dropped.
  """
  photometric: bool = True
  expand: bool = True
  crop: bool = True
  flip: bool = True
  channel_swap: bool = False
  random_interpolation: bool = False
  distort_prob: float = 0.5
  brightness_delta: float = 32.0
  contrast_range: tuple[float, float] = (0.5, 1.5)
  saturation_range: tuple[float, float] = (0.5, 1.5)
  hue_delta: float = 18.0
  channel_swap_prob: float = 0.5
  expand_prob: float = 0.5
  max_expand_ratio: float = 4.0
  fill_rgb: tuple[float, float, float] = pixel_stats.CAFFE_MEAN
  min_ious: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9, 0.0)
  num_trials: int = 50
  scale_range: tuple[float, float] = (0.3, 1.0)
  aspect_ratio_range: tuple[float, float] = (0.5, 2.0)
  flip_prob: float = 0.5
  min_box_size: float = 1e-3

  def __post_init__(self):
    # Sequences as tuples (a ConfigDict override may give lists): the config is hashable, a key
    # of the pipeline's cache of traced augmentations.
    for field in dataclasses.fields(self):
      if isinstance(getattr(self, field.name), list):
        object.__setattr__(self, field.name, tuple(getattr(self, field.name)))
    for name in ("distort_prob", "channel_swap_prob", "expand_prob", "flip_prob"):
      if not 0.0 <= getattr(self, name) <= 1.0:
        raise ValueError(f"AugmentConfig.{name} must be in [0, 1], got {getattr(self, name)}")
    for name in ("contrast_range", "saturation_range", "scale_range", "aspect_ratio_range"):
      low, high = getattr(self, name)
      # A factor of 0 is a valid (if extreme) contrast or saturation, not a valid patch size.
      if not (0.0 <= low <= high if name in ("contrast_range", "saturation_range")
              else 0.0 < low <= high):
        raise ValueError(f"AugmentConfig.{name} must satisfy 0 < low <= high (0 <= low for "
                         f"contrast and saturation), got {(low, high)}")
    if self.scale_range[1] > 1.0:
      raise ValueError(f"AugmentConfig.scale_range must be <= 1, got {self.scale_range}")
    if self.max_expand_ratio < 1.0:
      raise ValueError(f"AugmentConfig.max_expand_ratio must be >= 1, got {self.max_expand_ratio}")
    if not all(0.0 <= t <= 1.0 for t in self.min_ious):
      raise ValueError(f"AugmentConfig.min_ious must lie in [0, 1], got {self.min_ious}")
    if self.num_trials < 1:
      raise ValueError(f"AugmentConfig.num_trials must be >= 1, got {self.num_trials}")
    if len(self.fill_rgb) != 3:
      raise ValueError(f"AugmentConfig.fill_rgb needs 3 values, got {self.fill_rgb}")

  @classmethod
  def none(cls) -> "AugmentConfig":
    """Every random step off: :func:`train_preprocess` then only resizes."""
    return cls(photometric=False, expand=False, crop=False, flip=False)


def _check_example(example: Example, where: str) -> None:
  """Trace-time checks of the example format (shapes known statically)."""
  for key in ("image", "boxes"):
    if key not in example:
      raise ValueError(f"{where}: example has no {key!r} (keys: {sorted(example)})")
  image, boxes = example["image"], example["boxes"]
  if image.dtype != tf.uint8 or image.shape.rank != 3 or image.shape[-1] not in (None, 3):
    raise ValueError(f"{where}: image must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
  if boxes.dtype != tf.float32 or boxes.shape.rank != 2 or boxes.shape[-1] not in (None, 4):
    raise ValueError(f"{where}: boxes must be float32 [N, 4], got {boxes.dtype} {boxes.shape}")


def _uniform(seed: tf.Tensor, minval: float = 0.0, maxval: float = 1.0,
             shape: Sequence[int] = ()) -> tf.Tensor:
  return tf.random.stateless_uniform(shape, seed, minval, maxval, dtype=tf.float32)


def _with_prob(prob: float, seed: tf.Tensor, fn, x):
  """``fn(x)`` with probability ``prob``, else ``x`` (``fn`` only runs when chosen)."""
  return tf.cond(_uniform(seed) < prob, lambda: fn(x), lambda: x)


def _select_objects(example: Example, keep: tf.Tensor) -> Example:
  """Keeps the objects where the bool ``[N]`` ``keep`` is true, in every per-object field."""
  out = dict(example)
  for key in OBJECT_KEYS:
    if key in example:
      out[key] = tf.boolean_mask(example[key], keep)
  return out


def _centers_inside(boxes: tf.Tensor, patches: tf.Tensor) -> tf.Tensor:
  """bool ``[..., N]``: is the centre of each ``[N, 4]`` box inside each ``[..., 4]`` patch.

  Borders count as inside (Caffe's ``MeetEmitConstraint`` with ``CENTER``).
  """
  centers = (boxes[:, :2] + boxes[:, 2:]) / 2  # [N, 2]
  patches = patches[..., None, :]  # [..., 1, 4]
  return tf.reduce_all((centers >= patches[..., :2]) & (centers <= patches[..., 2:]), axis=-1)


def pairwise_iou(patches: tf.Tensor, boxes: tf.Tensor) -> tf.Tensor:
  """IoU of ``[..., 4]`` patches with ``[N, 4]`` boxes (xyxy) -> ``[..., N]``; 0 if union is 0."""
  patches = patches[..., None, :]
  wh = tf.maximum(tf.minimum(patches[..., 2:], boxes[:, 2:]) -
                  tf.maximum(patches[..., :2], boxes[:, :2]), 0.0)
  inter = wh[..., 0] * wh[..., 1]

  def area(b):
    return tf.maximum(b[..., 2] - b[..., 0], 0.0) * tf.maximum(b[..., 3] - b[..., 1], 0.0)

  union = area(patches) + area(boxes) - inter
  return tf.math.divide_no_nan(inter, union)


# ------------------------------------------------------------------------------------------------
# Photometric distortion.
# ------------------------------------------------------------------------------------------------


def photometric_params(seed: Seed, config: AugmentConfig = AugmentConfig()) -> tf.Tensor:
  """Caffe's ``DistortImage`` drawn for one example, for :func:`ssd_jax.photometric.distort`
  (which the train step applies on the device).

  Random brightness, contrast, saturation and hue, each with ``config.distort_prob``; contrast
  before or after saturation and hue at random (p = 0.5); then, with ``config.channel_swap``, a
  random channel order with ``config.channel_swap_prob``. Brightness adds ``delta`` (pixel units);
  contrast multiplies by ``alpha`` (Caffe's ``convertTo``, no mean centring); saturation scales
  HSV saturation; hue shifts by up to ``hue_delta`` degrees (ssd.pytorch's reading of
  ``hue_delta: 18``; 8-bit OpenCV hue in Caffe makes it 36 degrees there).

  Args:
    seed: int64 ``[2]`` stateless seed.
    config: the knobs.

  Returns:
    float32 ``[photometric.NUM_PARAMS]`` in the layout of :mod:`ssd_jax.photometric`, neutral
    values for the ops not drawn.
  """
  seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 11)
  p = config.distort_prob

  def maybe(index, drawn, neutral):
    return tf.where(_uniform(seeds[index]) < p, drawn, neutral)

  delta = config.brightness_delta
  values = [maybe(0, _uniform(seeds[1], -delta, delta), 0.0),
            maybe(2, _uniform(seeds[3], *config.contrast_range), 1.0),
            maybe(4, _uniform(seeds[5], *config.saturation_range), 1.0),
            maybe(6, _uniform(seeds[7], -config.hue_delta, config.hue_delta) / 360.0, 0.0),
            tf.cast(_uniform(seeds[8]) >= 0.5, tf.float32),
            tf.constant(0.0)]
  if config.channel_swap:
    order = tf.random.stateless_uniform((), seeds[10], 0, len(photometric.CHANNEL_PERMUTATIONS),
                                        dtype=tf.int32)
    values[5] = tf.where(_uniform(seeds[9]) < config.channel_swap_prob,
                         tf.cast(order, tf.float32), 0.0)
  return tf.stack(values)


# ------------------------------------------------------------------------------------------------
# Geometry: zoom-out and crop move a window over the image plane; pixels are extracted once.
# ------------------------------------------------------------------------------------------------
# A zoom-out canvas averages 7x the image area (up to 16x), mostly fill colour, and the crop that
# follows usually keeps a small part of it. So the geometric steps only move a *window*: int32
# ``[4]`` pixel xyxy in the plane of the source image (the plane is the fill colour outside the
# image), with the example's boxes normalized to the window. :func:`resize_window` then reads
# just the pixels that survive.
#
# A *window step* (:func:`expand_window`, :func:`crop_window` and their random versions) maps
# ``(example, window)`` to ``(example, window)``, leaving ``image`` as the source image. Run from
# the whole image ``[0, 0, W, H]`` and followed by :func:`extract_window`, it is the usual
# augmentation step on a materialized image; steps chained before one extraction give what the
# materialized steps chained would give.


def _full_window(image: tf.Tensor) -> tf.Tensor:
  size = tf.shape(image)[:2]
  return tf.stack([0, 0, size[1], size[0]])


def _window_size(window: tf.Tensor) -> tf.Tensor:
  """int32 ``[2]`` (height, width) of an xyxy window."""
  return tf.stack([window[3] - window[1], window[2] - window[0]])


def _fill_around(pixels: tf.Tensor, before: tf.Tensor, after: tf.Tensor,
                 fill_rgb: Sequence[float]) -> tf.Tensor:
  """``pixels`` uint8 ``[h, w, 3]`` with ``fill_rgb`` added around it: int32 ``(x, y)`` columns
  and rows ``before`` (left, top) and ``after`` (right, bottom)."""
  fill = tf.constant([int(round(v)) for v in fill_rgb], tf.uint8)

  def pad():
    # Concatenating constant blocks is several times faster than tf.pad per channel (tf.pad takes
    # a single scalar fill value, not a colour).
    size = tf.shape(pixels)[:2]
    middle = tf.concat([tf.broadcast_to(fill, tf.stack([size[0], before[0], 3])), pixels,
                        tf.broadcast_to(fill, tf.stack([size[0], after[0], 3]))], axis=1)
    width = before[0] + size[1] + after[0]
    return tf.concat([tf.broadcast_to(fill, tf.stack([before[1], width, 3])), middle,
                      tf.broadcast_to(fill, tf.stack([after[1], width, 3]))], axis=0)

  return tf.cond(tf.reduce_any(tf.concat([before, after], 0) > 0), pad, lambda: pixels)


def _image_part(image: tf.Tensor, window: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """int32 ``[2]`` ``(x, y)`` corners ``lo``, ``hi`` of the part of the image inside ``window``
  (``lo == hi`` along an axis where they do not overlap)."""
  size = tf.shape(image)[:2]
  limit = tf.stack([size[1], size[0]])  # (W, H)
  lo = tf.clip_by_value(window[:2], 0, limit)
  return lo, tf.maximum(tf.clip_by_value(window[2:], 0, limit), lo)


def extract_window(image: tf.Tensor, window: tf.Tensor,
                   fill_rgb: Sequence[float] = pixel_stats.CAFFE_MEAN) -> tf.Tensor:
  """The pixels of ``window`` in the plane of ``image``, ``fill_rgb`` outside the image.

  Args:
    image: uint8 ``[H, W, 3]``.
    window: int32 ``[4]`` pixel xyxy (``x1 > x0``, ``y1 > y0``); may extend beyond the image.
    fill_rgb: colour of the plane outside the image (0..255).

  Returns:
    uint8 ``[y1 - y0, x1 - x0, 3]``: the window step's image materialized (what
    :func:`resize_window` warps without materializing it).
  """
  window = tf.convert_to_tensor(window, tf.int32)
  lo, hi = _image_part(image, window)
  window_wh = window[2:] - window[:2]
  before = tf.clip_by_value(lo - window[:2], 0, window_wh)  # Clipped: for a window off the image.
  return _fill_around(image[lo[1]:hi[1], lo[0]:hi[0]], before, window_wh - before - (hi - lo),
                      fill_rgb)


def resize_window(example: Example, window: tf.Tensor, image_size: int,
                  fill_rgb: Sequence[float] = pixel_stats.CAFFE_MEAN,
                  method: Union[str, tf.Tensor] = "bilinear") -> Example:
  """The window warped to ``image_size x image_size``, without materializing it.

  A zoom-out window is mostly fill colour (up to 16x the image area), so only the image's part
  of the window is resized, onto its *footprint* in the output: the output pixels it covers, its
  edges rounded to whole pixels. The rest of the output is ``fill_rgb``. The boxes are mapped
  through that same footprint, so they follow the pixels exactly. For a window inside the image
  this is exactly :func:`extract_window` followed by :func:`resize`; otherwise it differs from
  that by the rounding (at most half an output pixel per edge of the image) and by the image's
  border pixels, which are not blended with the fill.

  Args:
    example: the source ``image`` uint8 ``[H, W, 3]``, and ``[N, 4]`` boxes normalized to
      ``window``, lying on the image.
    window: int32 ``[4]`` pixel xyxy in the plane of the image, overlapping it.
    image_size: output side, pixels.
    fill_rgb: colour outside the image (0..255).
    method: as for :func:`resize`.

  Returns:
    The example with uint8 ``[image_size, image_size, 3]`` image, boxes normalized to it and
    ``footprint``, int32 ``[4]`` output pixel xyxy (exclusive ends) of the image's part: the
    pixels the photometric distortion may touch (the fill stays undistorted, as in Caffe, which
    distorts before the zoom-out).
  """
  image = example["image"]
  window = tf.convert_to_tensor(window, tf.int32)
  lo, hi = _image_part(image, window)
  # The window steps always keep part of the image (the crop keeps an object's centre).
  overlap = tf.debugging.assert_positive(hi - lo, message="resize_window: the window does not "
                                         "overlap the image")
  with tf.control_dependencies([overlap]):
    to_output = image_size / tf.cast(window[2:] - window[:2], tf.float32)  # (x, y) px per px

  def output_pixel(corner):
    return tf.cast(tf.round(tf.cast(corner - window[:2], tf.float32) * to_output), tf.int32)

  out_lo = tf.clip_by_value(output_pixel(lo), 0, image_size - 1)
  out_hi = tf.clip_by_value(output_pixel(hi), out_lo + 1, image_size)
  pixels = resize_image(image[lo[1]:hi[1], lo[0]:hi[0]], (out_hi - out_lo)[::-1], method)
  out = dict(example)
  out["image"] = _fill_around(pixels, out_lo, image_size - out_hi, fill_rgb)
  out["footprint"] = tf.concat([out_lo, out_hi], axis=0)
  # Window-normalized -> image pixels -> the footprint's output pixels -> output-normalized.
  tile = lambda v: tf.cast(tf.tile(v, [2]), tf.float32)
  pixel_boxes = example["boxes"] * tile(window[2:] - window[:2]) + tile(window[:2])
  footprint_boxes = (pixel_boxes - tile(lo)) * tile(out_hi - out_lo) / tile(hi - lo) + tile(out_lo)
  out["boxes"] = tf.clip_by_value(footprint_boxes / image_size, 0.0, 1.0)
  return out


def expand_window(example: Example, window: tf.Tensor, canvas_size: tf.Tensor,
                  offset: tf.Tensor) -> tuple[Example, tf.Tensor]:
  """Zoom-out: a ``canvas_size`` canvas on which the current window sits at ``offset``.

  Args:
    example: with ``[N, 4]`` boxes normalized to ``window``.
    window: int32 ``[4]`` pixel xyxy.
    canvas_size: int32 ``[2]`` (height, width) of the canvas, ``>=`` the window's.
    offset: int32 ``[2]`` (top, left) pixel position of the current window on the canvas.

  Returns:
    ``(example, canvas)``: the canvas window, and the boxes normalized to it.
  """
  size = tf.cast(_window_size(window), tf.float32)
  canvas_size = tf.convert_to_tensor(canvas_size, tf.int32)
  offset = tf.convert_to_tensor(offset, tf.int32)
  canvas_lo = window[:2] - offset[::-1]
  out = dict(example)
  scale = tf.tile(size[::-1], [2])  # (w, h, w, h)
  shift = tf.cast(tf.tile(offset[::-1], [2]), tf.float32)
  canvas_scale = tf.cast(tf.tile(canvas_size[::-1], [2]), tf.float32)
  out["boxes"] = (example["boxes"] * scale + shift) / canvas_scale
  return out, tf.concat([canvas_lo, canvas_lo + canvas_size[::-1]], axis=0)


def random_expand_window(example: Example, window: tf.Tensor, seed: Seed,
                         config: AugmentConfig = AugmentConfig()) -> tuple[Example, tf.Tensor]:
  """With ``config.expand_prob``, :func:`expand_window` onto a canvas ``ratio`` times the window
  side (ratio uniform in ``[1, max_expand_ratio]``, same for height and width), at a uniformly
  random integer offset (Caffe's ``ExpandImage``); its fill is ``config.fill_rgb``."""
  seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 4)

  def zoom_out(args):
    size = _window_size(args[1])
    ratio = _uniform(seeds[1], 1.0, config.max_expand_ratio)
    canvas_size = tf.cast(tf.math.floor(tf.cast(size, tf.float32) * ratio), tf.int32)
    slack = canvas_size - size
    top = tf.random.stateless_uniform((), seeds[2], 0, slack[0] + 1, dtype=tf.int32)
    left = tf.random.stateless_uniform((), seeds[3], 0, slack[1] + 1, dtype=tf.int32)
    return expand_window(*args, canvas_size, tf.stack([top, left]))

  return _with_prob(config.expand_prob, seeds[0], zoom_out, (example, window))


def _snap_to_pixels(patches: tf.Tensor, image_size: tf.Tensor) -> tf.Tensor:
  """Rounds normalized ``[..., 4]`` patches to whole pixels, at least one pixel wide and high."""
  hw = tf.cast(image_size, tf.float32)
  scale = tf.stack([hw[1], hw[0], hw[1], hw[0]])
  px = tf.round(patches * scale)
  lo = tf.minimum(px[..., :2], scale[2:] - 1)
  hi = tf.minimum(tf.maximum(px[..., 2:], lo + 1), scale[2:])
  return tf.concat([lo, hi], axis=-1) / scale


def sample_patch(boxes: tf.Tensor, seed: Seed, config: AugmentConfig = AugmentConfig(),
                 image_size: Optional[tf.Tensor] = None) -> tuple[tf.Tensor, tf.Tensor]:
  """Caffe's batch sampler: one patch among the whole image and the IoU-constrained samplers.

  For each entry ``t`` of ``config.min_ious``, ``num_trials`` patches are drawn at once with scale
  ``s`` in ``scale_range`` and aspect ratio ``a`` in ``aspect_ratio_range`` clamped to
  ``[s**2, 1/s**2]`` (so ``w = s*sqrt(a) <= 1``, ``h = s/sqrt(a) <= 1``), at a uniform position in
  the image. A trial is valid when its IoU with some box is ``>= t`` and the centre of at least one
  box lies inside it (as ssd.pytorch requires; otherwise the crop would hold no object). Each
  sampler's candidate is its first valid trial. As in Caffe, the result is drawn uniformly among
  the whole image and the samplers that found a candidate, so an image without boxes always gets
  the whole image.

  Args:
    boxes: ``[N, 4]`` normalized xyxy (``N`` may be 0).
    seed: int64 ``[2]`` stateless seed.
    config: the knobs (``min_ious``, ``num_trials``, ``scale_range``, ``aspect_ratio_range``).
    image_size: optional int32 ``[2]`` (height, width): trials are snapped to whole pixels before
      their constraints are checked, so that :func:`crop_window` crops exactly that patch.

  Returns:
    ``(patch, min_iou)``: float32 ``[4]`` normalized xyxy patch, and the float32 scalar IoU
    constraint it satisfies (0 for the whole image).
  """
  seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 5)
  shape = (len(config.min_ious), config.num_trials)
  scale = _uniform(seeds[0], *config.scale_range, shape=shape)
  aspect = tf.clip_by_value(_uniform(seeds[1], *config.aspect_ratio_range, shape=shape),
                            scale ** 2, 1.0 / scale ** 2)
  w = tf.minimum(scale * tf.sqrt(aspect), 1.0)
  h = tf.minimum(scale / tf.sqrt(aspect), 1.0)
  x0 = _uniform(seeds[2], shape=shape) * (1.0 - w)
  y0 = _uniform(seeds[3], shape=shape) * (1.0 - h)
  trials = tf.stack([x0, y0, x0 + w, y0 + h], axis=-1)  # [S, T, 4]
  if image_size is not None:
    trials = _snap_to_pixels(trials, image_size)

  boxes = tf.convert_to_tensor(boxes, tf.float32)
  min_ious = tf.constant(config.min_ious, tf.float32)
  overlap_ok = tf.reduce_any(pairwise_iou(trials, boxes) >= min_ious[:, None, None], axis=-1)
  valid = overlap_ok & tf.reduce_any(_centers_inside(boxes, trials), axis=-1)  # [S, T]
  first = tf.argmax(tf.cast(valid, tf.int32), axis=1, output_type=tf.int32)  # [S]
  candidates = tf.concat([tf.constant([[0.0, 0.0, 1.0, 1.0]]),
                          tf.gather(trials, first, axis=1, batch_dims=1)], axis=0)  # [S + 1, 4]
  candidate_ok = tf.concat([[True], tf.reduce_any(valid, axis=1)], axis=0)
  scores = tf.where(candidate_ok, _uniform(seeds[4], shape=(shape[0] + 1,)), -1.0)
  pick = tf.argmax(scores, output_type=tf.int32)
  return candidates[pick], tf.concat([[0.0], min_ious], axis=0)[pick]


def crop_window(example: Example, window: tf.Tensor,
                patch: tf.Tensor) -> tuple[Example, tf.Tensor]:
  """Crops the window to ``patch`` and keeps the objects whose box centre lies inside it.

  The patch is rounded to whole pixels of the window; kept boxes are clipped to it and
  renormalized to it.

  Args:
    example: with ``[N, 4]`` boxes normalized to ``window``.
    window: int32 ``[4]`` pixel xyxy.
    patch: float32 ``[4]`` xyxy, normalized to ``window``.

  Returns:
    ``(example, patch window)``: objects outside the patch dropped from every per-object field,
    the others' boxes normalized to the patch window.
  """
  size = _window_size(window)
  patch = _snap_to_pixels(tf.convert_to_tensor(patch, tf.float32), size)
  patch_px = tf.cast(tf.round(patch * tf.cast(tf.tile(size[::-1], [2]), tf.float32)), tf.int32)
  out = _select_objects(example, _centers_inside(example["boxes"], patch))
  lo, hi = tf.tile(patch[:2], [2]), tf.tile(patch[2:], [2])
  out["boxes"] = (tf.clip_by_value(out["boxes"], lo, hi) - lo) / (hi - lo)
  return out, tf.tile(window[:2], [2]) + patch_px


def random_crop_window(example: Example, window: tf.Tensor, seed: Seed,
                       config: AugmentConfig = AugmentConfig()) -> tuple[Example, tf.Tensor]:
  """:func:`sample_patch` (snapped to the window's pixels), then :func:`crop_window`."""
  patch, _ = sample_patch(example["boxes"], seed, config, _window_size(window))
  return crop_window(example, window, patch)


# ------------------------------------------------------------------------------------------------
# Flip, resize, cleanup.
# ------------------------------------------------------------------------------------------------


def flip_horizontal(example: Example) -> Example:
  """Mirrors the image left-right; box ``(x0, y0, x1, y1)`` becomes ``(1 - x1, y0, 1 - x0, y1)``,
  and so does a ``footprint`` (pixel xyxy, exclusive ends) in pixels."""
  out = dict(example)
  out["image"] = tf.reverse(example["image"], axis=[1])
  x0, y0, x1, y1 = tf.unstack(example["boxes"], axis=-1)
  out["boxes"] = tf.stack([1.0 - x1, y0, 1.0 - x0, y1], axis=-1)
  if "footprint" in example:
    width = tf.shape(example["image"], out_type=tf.int32)[1]
    x0, y0, x1, y1 = tf.unstack(example["footprint"])
    out["footprint"] = tf.stack([width - x1, y0, width - x0, y1])
  return out


def random_flip(example: Example, seed: Seed, prob: float = 0.5) -> Example:
  """:func:`flip_horizontal` with probability ``prob``."""
  return _with_prob(prob, tf.cast(seed, tf.int64), flip_horizontal, example)


def resize_image(images: tf.Tensor, size: Union[int, tf.Tensor],
                 method: Union[str, tf.Tensor] = "bilinear") -> tf.Tensor:
  """uint8 ``[H, W, 3]`` or ``[B, H, W, 3]`` -> uint8 ``[..., h, w, 3]``: ``tf.image.resize``
  without antialiasing (as Caffe's warp), rounded to the nearest level.

  ``size`` is the side of a square output or int32 ``(h, w)``; ``method`` a ``tf.image.resize``
  method name, or an int32 scalar tensor indexing the methods Caffe samples from (bilinear, area,
  nearest, bicubic, Lanczos-3).
  """
  size = (size, size) if isinstance(size, int) else size

  def warp(name):
    # Float for every method but "nearest", which keeps uint8.
    resized = tf.cast(tf.image.resize(images, size, method=name, antialias=False), tf.float32)
    if name in _OVERSHOOTING_INTERPOLATIONS:
      resized = tf.clip_by_value(resized, 0.0, 255.0)
    return tf.cast(tf.round(resized), tf.uint8)

  if isinstance(method, str):
    return warp(method)
  return tf.switch_case(method, [functools.partial(warp, name) for name in _RANDOM_INTERPOLATIONS])


def resize(example: Example, image_size: int, method: Union[str, tf.Tensor] = "bilinear"
           ) -> Example:
  """Warps the image to uint8 ``[image_size, image_size, 3]`` (no aspect preservation, as SSD)
  with :func:`resize_image`'s ``method``. Boxes are normalized, so they are unchanged."""
  _check_example(example, "resize")
  return {**example, "image": resize_image(example["image"], image_size, method)}


def drop_degenerate(example: Example, min_size: float = 1e-3) -> Example:
  """Drops the objects whose normalized box width or height is below ``min_size``."""
  boxes = example["boxes"]
  keep = tf.reduce_all(boxes[:, 2:] - boxes[:, :2] >= min_size, axis=-1)
  return _select_objects(example, keep)


# ------------------------------------------------------------------------------------------------
# Full recipes.
# ------------------------------------------------------------------------------------------------


def train_preprocess(example: Example, seed: Seed, image_size: int,
                     config: AugmentConfig = AugmentConfig()) -> Example:
  """The SSD training augmentation of one example (see the module docstring for the order).

  Args:
    example: image uint8 ``[H, W, 3]``, boxes float32 ``[N, 4]`` normalized xyxy, optional
      per-object ``labels`` / ``difficult`` / ``crowd`` / ``area`` ``[N]``; other keys pass
      through.
    seed: int64 ``[2]`` stateless seed; the same seed gives the same output.
    image_size: output side in pixels.
    config: the knobs; ``AugmentConfig.none()`` only resizes.

  ``tf.random.experimental.stateless_split(seed, 5)`` are the seeds of, in order,
  :func:`photometric_params`, :func:`random_expand_window`, :func:`random_crop_window`, the
  interpolation choice and :func:`random_flip`. The result is exactly that of running these
  steps one after the other with the resize by :func:`resize_window`, which equals the steps on
  materialized images up to the rounding of the zoom-out image's footprint to output pixels (see
  there; the boxes follow the pixels exactly).

  Returns:
    The example with uint8 ``[image_size, image_size, 3]`` image, ``[M, 4]`` (``M <= N``)
    normalized xyxy boxes, all in ``[0, 1]`` and at least ``min_box_size`` wide and high, the
    image's ``footprint`` (see :func:`resize_window`, flipped with the image) and, with
    ``config.photometric``, float32 ``photometric`` values: the image is not yet distorted,
    :func:`ssd_jax.photometric.distort` does that with them in the train step.
  """
  _check_example(example, "train_preprocess")
  seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 5)
  image = example["image"]
  example = dict(example)
  example["boxes"] = tf.clip_by_value(example["boxes"], 0.0, 1.0)
  window = _full_window(image)
  if config.expand:
    example, window = random_expand_window(example, window, seeds[1], config)
  if config.crop:
    example, window = random_crop_window(example, window, seeds[2], config)
  method = "bilinear"
  if config.random_interpolation:
    method = tf.random.stateless_uniform((), seeds[3], 0, len(_RANDOM_INTERPOLATIONS),
                                         dtype=tf.int32)
  example = resize_window(example, window, image_size, config.fill_rgb, method)
  if config.flip:
    example = random_flip(example, seeds[4], config.flip_prob)
  if config.photometric:
    example["photometric"] = photometric_params(seeds[0], config)
  return drop_degenerate(example, config.min_box_size)


def eval_preprocess(example: Example, image_size: int) -> Example:
  """Evaluation preprocessing: resize only (boxes untouched) and record ``orig_size``.

  Returns:
    The example with uint8 ``[image_size, image_size, 3]`` image and int32 ``[2]`` ``orig_size``
    (height, width of the original image).
  """
  _check_example(example, "eval_preprocess")
  out = resize(example, image_size)
  out["orig_size"] = tf.shape(example["image"])[:2]
  return out
