"""Tests of ssd_jax.data.augment against loop-based NumPy references and invariants over seeds."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from ssd_jax import photometric
from ssd_jax.data import augment

NUM_SEEDS = 150
CONFIG = augment.AugmentConfig()


# ----------------------------------------------------------------------------------------------
# NumPy references (loops, written independently of the module).
# ----------------------------------------------------------------------------------------------


def iou_ref(a, b):
  """IoU of two xyxy boxes."""
  iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
  ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
  inter = iw * ih
  union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
  return inter / union if union > 0 else 0.0


def extract_window_ref(image, window, fill):
  """Pixel by pixel: the image inside, ``fill`` outside."""
  x0, y0, x1, y1 = window
  out = np.zeros((y1 - y0, x1 - x0, 3), np.uint8)
  for y in range(y0, y1):
    for x in range(x0, x1):
      inside = 0 <= y < image.shape[0] and 0 <= x < image.shape[1]
      out[y - y0, x - x0] = image[y, x] if inside else fill
  return out


def bilinear_ref(image, out_h, out_w):
  """TF's bilinear resize with half-pixel centres (edge pixels repeated), pixel by pixel."""
  h, w = image.shape[:2]
  out = np.zeros((out_h, out_w, 3))
  for y in range(out_h):
    sy = (y + 0.5) * h / out_h - 0.5
    y0 = int(np.floor(sy))
    ya, yb, fy = min(max(y0, 0), h - 1), min(max(y0 + 1, 0), h - 1), sy - y0
    for x in range(out_w):
      sx = (x + 0.5) * w / out_w - 0.5
      x0 = int(np.floor(sx))
      xa, xb, fx = min(max(x0, 0), w - 1), min(max(x0 + 1, 0), w - 1), sx - x0
      top = (1 - fx) * image[ya, xa].astype(float) + fx * image[ya, xb]
      bottom = (1 - fx) * image[yb, xa].astype(float) + fx * image[yb, xb]
      out[y, x] = (1 - fy) * top + fy * bottom
  return out


def resize_window_ref(image, window, size, fill, boxes=()):
  """The documented rule, written out: the image's part of ``window`` resized onto its
  footprint (its edges in output pixels, rounded), ``fill`` elsewhere; each box (normalized to
  the window) mapped from the image part to the footprint. Returns the image and the boxes."""
  x0, y0, x1, y1 = window
  h, w = image.shape[:2]
  part = [max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)]
  lo = [min(round((part[0] - x0) * size / (x1 - x0)), size - 1),
        min(round((part[1] - y0) * size / (y1 - y0)), size - 1)]
  hi = [min(max(round((part[2] - x0) * size / (x1 - x0)), lo[0] + 1), size),
        min(max(round((part[3] - y0) * size / (y1 - y0)), lo[1] + 1), size)]
  out = np.zeros((size, size, 3), np.uint8)
  out[:] = fill
  pixels = bilinear_ref(image[part[1]:part[3], part[0]:part[2]], hi[1] - lo[1], hi[0] - lo[0])
  out[lo[1]:hi[1], lo[0]:hi[0]] = np.round(pixels)
  out_boxes = []
  for box in boxes:
    out_box = []
    for k, value in enumerate(box):
      axis = k % 2  # x, y, x, y
      pixel = window[axis] + value * (window[axis + 2] - window[axis])
      footprint = lo[axis] + ((pixel - part[axis]) * (hi[axis] - lo[axis])
                              / (part[axis + 2] - part[axis]))
      out_box.append(footprint / size)
    out_boxes.append(out_box)
  return out, np.array(out_boxes, np.float32).reshape(-1, 4)


def crop_ref(boxes, patch):
  """Kept box indices and their boxes relative to ``patch`` (all normalized), box by box."""
  kept, out = [], []
  px0, py0, px1, py1 = patch
  for k, (x0, y0, x1, y1) in enumerate(boxes):
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if px0 <= cx <= px1 and py0 <= cy <= py1:
      kept.append(k)
      out.append([(min(max(x0, px0), px1) - px0) / (px1 - px0),
                  (min(max(y0, py0), py1) - py0) / (py1 - py0),
                  (min(max(x1, px0), px1) - px0) / (px1 - px0),
                  (min(max(y1, py0), py1) - py0) / (py1 - py0)])
  return kept, np.array(out, np.float32).reshape(-1, 4)


# ----------------------------------------------------------------------------------------------
# Helpers.
# ----------------------------------------------------------------------------------------------


def make_example(rng, height=30, width=40, num_boxes=3):
  """Random pixels; boxes on the pixel grid; labels 1..N identify the boxes; flags from labels."""
  image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
  boxes = []
  for _ in range(num_boxes):
    x0, x1 = sorted(rng.choice(width + 1, 2, replace=False))
    y0, y1 = sorted(rng.choice(height + 1, 2, replace=False))
    boxes.append([x0 / width, y0 / height, x1 / width, y1 / height])
  labels = np.arange(1, num_boxes + 1, dtype=np.int32)
  return {
      "image": image,
      "boxes": np.array(boxes, np.float32).reshape(-1, 4),
      "labels": labels,
      "difficult": labels % 2 == 0,
      "crowd": labels % 3 == 0,
      "image_id": "img",
  }


def to_tf(example):
  return {k: tf.constant(v) for k, v in example.items()}


def over_seeds(fn, num=NUM_SEEDS, base=7):
  """[fn(seed) for num seeds], run as one traced tf.data map (fast), converted to NumPy."""
  seeds = tf.data.Dataset.range(num).map(lambda i: tf.stack([tf.constant(base, tf.int64), i]))
  return list(seeds.map(fn).as_numpy_iterator())


def check_aligned(out):
  """labels / difficult / crowd of every kept object still belong together."""
  assert len(out["boxes"]) == len(out["labels"]) == len(out["difficult"]) == len(out["crowd"])
  np.testing.assert_array_equal(out["difficult"], out["labels"] % 2 == 0)
  np.testing.assert_array_equal(out["crowd"], out["labels"] % 3 == 0)


# ----------------------------------------------------------------------------------------------
# The geometric steps on materialized images, built from the module's window steps: each one
# extracts its pixels, which train_preprocess defers to a single extraction.
# ----------------------------------------------------------------------------------------------


def materialize(example, step, fill_rgb=CONFIG.fill_rgb):
  """A window step as a step on materialized images: run from the whole image, then extracted."""
  size = tf.shape(example["image"])[:2]
  out, window = step(example, tf.stack([0, 0, size[1], size[0]]))
  out = dict(out)
  out["image"] = augment.extract_window(example["image"], window, fill_rgb)
  return out


def expand(example, canvas_size, offset, fill_rgb):
  """Zoom-out of the image itself onto a ``canvas_size`` canvas, the image at ``offset``."""
  return materialize(
      example, lambda ex, w: augment.expand_window(ex, w, canvas_size, offset), fill_rgb)


def random_expand(example, seed, config):
  return materialize(
      example, lambda ex, w: augment.random_expand_window(ex, w, seed, config), config.fill_rgb)


def crop_to_patch(example, patch):
  """Crop of the image itself to the normalized ``patch``."""
  return materialize(example, lambda ex, w: augment.crop_window(ex, w, patch))


def random_crop(example, seed, config):
  return materialize(example, lambda ex, w: augment.random_crop_window(ex, w, seed, config))


# ----------------------------------------------------------------------------------------------
# Config.
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field, value", [
    ("flip_prob", 1.5), ("expand_prob", -0.1), ("scale_range", (0.0, 1.0)),
    ("scale_range", (0.5, 1.2)), ("aspect_ratio_range", (2.0, 0.5)), ("max_expand_ratio", 0.5),
    ("min_ious", (0.1, 1.5)), ("num_trials", 0), ("contrast_range", (-1.0, 1.0)),
    ("fill_rgb", (1.0, 2.0))])
def test_config_rejects_bad_values(field, value):
  with pytest.raises(ValueError, match=field):
    augment.AugmentConfig(**{field: value})


def test_config_takes_lists_as_tuples_and_is_hashable():
  """A ConfigDict override may give lists; the config keys the pipeline's traced augmentations."""
  cfg = augment.AugmentConfig(min_ious=[0.1, 0.5], scale_range=[0.3, 1.0])
  assert cfg.min_ious == (0.1, 0.5) and cfg.scale_range == (0.3, 1.0)
  assert hash(cfg) == hash(augment.AugmentConfig(min_ious=(0.1, 0.5), scale_range=(0.3, 1.0)))


def test_config_none_turns_everything_off():
  cfg = augment.AugmentConfig.none()
  assert not (cfg.photometric or cfg.expand or cfg.crop or cfg.flip)


# ----------------------------------------------------------------------------------------------
# IoU and windows.
# ----------------------------------------------------------------------------------------------


def test_pairwise_iou_matches_reference():
  rng = np.random.default_rng(0)
  patches = np.sort(rng.uniform(size=(5, 7, 2, 2)), axis=2).transpose(0, 1, 3, 2)
  patches = patches.reshape(5, 7, 4)[..., [0, 2, 1, 3]].astype(np.float32)  # xyxy
  boxes = np.concatenate([patches[0, :3], [[0.2, 0.2, 0.2, 0.5]]]).astype(np.float32)
  got = augment.pairwise_iou(tf.constant(patches), tf.constant(boxes)).numpy()
  assert got.shape == (5, 7, 4)
  for i in range(5):
    for j in range(7):
      for k in range(4):
        assert got[i, j, k] == pytest.approx(iou_ref(patches[i, j], boxes[k]), abs=1e-6)
  # Hand-computed: half overlap -> 1/3; the degenerate box has IoU 0.
  half = augment.pairwise_iou(tf.constant([0.0, 0.0, 1.0, 1.0]),
                              tf.constant([[0.5, 0.0, 1.5, 1.0], [0.5, 0.5, 0.5, 0.5]]))
  np.testing.assert_allclose(half.numpy(), [1 / 3, 0.0], atol=1e-6)


@pytest.mark.parametrize("window", [
    (0, 0, 9, 7), (2, 1, 6, 5), (-3, -2, 12, 9), (-4, 3, 2, 11), (5, -6, 14, 2),
    (12, 1, 15, 4), (-5, -5, -1, -2)])
def test_extract_window_matches_reference(window):
  rng = np.random.default_rng(1)
  image = rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)
  fill = (10.0, 20.0, 30.0)
  got = augment.extract_window(tf.constant(image), tf.constant(window, tf.int32), fill).numpy()
  np.testing.assert_array_equal(got, extract_window_ref(image, window, fill))


@pytest.mark.parametrize("window, size", [
    ((0, 0, 9, 7), 5), ((2, 1, 6, 5), 11), ((-3, -2, 12, 9), 8), ((-4, 3, 2, 11), 13),
    ((5, -6, 14, 2), 6), ((-20, -30, 40, 35), 16), ((-9, -7, 18, 14), 9)])
def test_resize_window_matches_reference(window, size):
  rng = np.random.default_rng(15)
  image = rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)
  fill = (10.0, 20.0, 30.0)
  # Boxes on the image part of the window, in window-normalized coordinates.
  x0, y0, x1, y1 = window
  part = np.array([max(x0, 0), max(y0, 0), min(x1, 9), min(y1, 7)], float)
  corners = part[:2] + rng.uniform(0, 1, (4, 2, 2)) * (part[2:] - part[:2])
  pixel_boxes = np.concatenate([corners.min(1), corners.max(1)], axis=1)
  boxes = ((pixel_boxes - [x0, y0, x0, y0]) / [x1 - x0, y1 - y0, x1 - x0, y1 - y0])
  ex = {"image": tf.constant(image), "boxes": tf.constant(boxes, tf.float32)}
  got = augment.resize_window(ex, tf.constant(window, tf.int32), size, fill)
  want_image, want_boxes = resize_window_ref(image, window, size, fill, boxes)
  # float32 against float64 interpolation: a .5 can round either way.
  got_image = got["image"].numpy()
  assert np.abs(got_image.astype(int) - want_image).max() <= 1
  assert np.mean(got_image == want_image) > 0.97
  np.testing.assert_allclose(got["boxes"].numpy(), want_boxes, atol=1e-5)


@pytest.mark.parametrize("window", [(0, 0, 9, 7), (2, 1, 6, 5), (1, 3, 9, 4)])
def test_resize_window_inside_the_image_is_crop_then_resize(window):
  image = np.random.default_rng(16).integers(0, 256, (7, 9, 3), dtype=np.uint8)
  ex = {"image": tf.constant(image), "boxes": tf.constant([[0.0, 0.25, 0.5, 1.0]])}
  got = augment.resize_window(ex, tf.constant(window, tf.int32), 12)
  want = augment.resize(materialize(ex, lambda e, w: (e, tf.constant(window, tf.int32))), 12)
  np.testing.assert_array_equal(got["image"].numpy(), want["image"].numpy())
  np.testing.assert_allclose(got["boxes"].numpy(), want["boxes"].numpy(), atol=1e-6)


def test_resize_window_zoom_out_on_whole_pixels_equals_the_materialized_canvas():
  # The 6x6 image fills the bottom-right quarter of a 12x12 window; at 6 px out, every output
  # pixel of its footprint samples two image pixels, none of the fill.
  image = np.random.default_rng(17).integers(0, 256, (6, 6, 3), dtype=np.uint8)
  ex = {"image": tf.constant(image), "boxes": tf.constant([[0.5, 0.75, 1.0, 1.0]])}
  window = tf.constant([-6, -6, 6, 6])
  got = augment.resize_window(ex, window, 6, CONFIG.fill_rgb)
  want = augment.resize(materialize(ex, lambda e, w: (e, window)), 6)
  np.testing.assert_array_equal(got["image"].numpy(), want["image"].numpy())
  np.testing.assert_allclose(got["boxes"].numpy(), [[0.5, 0.75, 1.0, 1.0]], atol=1e-6)
  assert np.all(got["image"].numpy()[:3] == [123, 117, 104])


def test_resize_window_footprint_is_where_the_image_lies():
  # Image pixels in 1..200, the fill 0: the footprint is exactly the non-fill output.
  image = np.random.default_rng(18).integers(1, 200, (4, 5, 3), dtype=np.uint8)
  ex = {"image": tf.constant(image), "boxes": tf.zeros([0, 4])}
  for window, size in (([-5, 0, 5, 4], 10), ([-5, -2, 5, 4], 7), ([1, 1, 4, 3], 6),
                       ([-3, -3, 8, 7], 5)):
    out = augment.resize_window(ex, tf.constant(window), size, (0.0, 0.0, 0.0))
    x0, y0, x1, y1 = out["footprint"].numpy()
    inside = np.zeros((size, size), bool)
    inside[y0:y1, x0:x1] = True
    np.testing.assert_array_equal(np.any(out["image"].numpy() > 0, axis=-1), inside, str(window))


def test_resize_window_rejects_a_window_off_the_image():
  ex = {"image": tf.zeros([4, 4, 3], tf.uint8), "boxes": tf.zeros([0, 4])}
  with pytest.raises(tf.errors.InvalidArgumentError, match="does not overlap the image"):
    augment.resize_window(ex, tf.constant([5, 0, 9, 4]), 8)


# ----------------------------------------------------------------------------------------------
# Photometric distortion.
# ----------------------------------------------------------------------------------------------


def only(**kwargs):
  """A photometric config with every op neutral except the given ones, each always applied."""
  neutral = dict(distort_prob=1.0, brightness_delta=0.0, contrast_range=(1.0, 1.0),
                 saturation_range=(1.0, 1.0), hue_delta=0.0)
  return dataclasses.replace(CONFIG, **{**neutral, **kwargs})


def params_over_seeds(config, num=200):
  return np.stack(over_seeds(lambda s: augment.photometric_params(s, config), num))


def test_neutral_photometric_params():
  params = params_over_seeds(only(), num=40)
  # Every op neutral; only the order of contrast (index 4) is still drawn.
  np.testing.assert_array_equal(params[:, [0, 1, 2, 3, 5]],
                                np.broadcast_to(np.delete(photometric.NEUTRAL, 4), (40, 5)))
  assert set(params[:, 4]) == {0.0, 1.0}


def test_photometric_params_ranges_and_probabilities():
  params = params_over_seeds(CONFIG, num=400)
  brightness, contrast, saturation, hue, last, order = params.T
  for values, neutral, low, high in ((brightness, 0.0, -32.0, 32.0), (contrast, 1.0, 0.5, 1.5),
                                     (saturation, 1.0, 0.5, 1.5), (hue, 0.0, -0.05, 0.05)):
    drawn = values != neutral
    assert 0.42 < drawn.mean() < 0.58  # distort_prob 0.5
    assert np.all((values[drawn] >= low) & (values[drawn] <= high))
    assert values[drawn].min() < low + 0.2 * (high - low)  # spread over the range
    assert values[drawn].max() > high - 0.2 * (high - low)
  assert 0.42 < last.mean() < 0.58 and set(last) == {0.0, 1.0}
  assert np.all(order == 0)  # no channel swap by default
  # The ops are drawn independently of each other.
  assert 0.15 < np.mean((brightness != 0) & (contrast != 1)) < 0.35


def test_photometric_params_channel_swap():
  config = dataclasses.replace(CONFIG, channel_swap=True, channel_swap_prob=0.5)
  order = params_over_seeds(config, num=400)[:, 5]
  assert set(order) == set(range(6))
  # Swapped half the time, to one of the six orders (the identity among them).
  assert 0.5 < np.mean(order == 0) < 0.68


def test_photometric_params_are_those_of_the_seed():
  a = params_over_seeds(CONFIG, num=20)
  np.testing.assert_array_equal(a, params_over_seeds(CONFIG, num=20))
  assert len({row.tobytes() for row in a}) == 20


# ----------------------------------------------------------------------------------------------
# Zoom-out.
# ----------------------------------------------------------------------------------------------


def test_expand_hand_computed():
  image = np.arange(2 * 4 * 3, dtype=np.uint8).reshape(2, 4, 3)
  ex = {"image": tf.constant(image), "boxes": tf.constant([[0.25, 0.0, 0.75, 0.5]])}
  out = expand(ex, [4, 8], [1, 2], fill_rgb=(5, 6, 7))
  canvas = out["image"].numpy()
  assert canvas.shape == (4, 8, 3)
  np.testing.assert_array_equal(canvas[1:3, 2:6], image)
  assert np.all(canvas[0] == [5, 6, 7]) and np.all(canvas[:, :2] == [5, 6, 7])
  # Box pixels x 1..3, y 0..1 move to x 3..5, y 1..2 of the 8x4 canvas.
  np.testing.assert_allclose(out["boxes"].numpy(), [[3 / 8, 1 / 4, 5 / 8, 2 / 4]], atol=1e-6)
  # The window step itself: the image's window (0, 0, 4, 2) becomes the canvas at (-2, -1).
  _, window = augment.expand_window(ex, tf.constant([0, 0, 4, 2]), [4, 8], [1, 2])
  np.testing.assert_array_equal(window.numpy(), [-2, -1, 6, 3])


def test_random_expand_keeps_box_contents_and_ratio():
  rng = np.random.default_rng(3)
  example = make_example(rng, num_boxes=4)
  example["boxes"] = np.concatenate([example["boxes"], [[0, 0, 1, 1]]]).astype(np.float32)
  example.update(labels=np.arange(1, 6, dtype=np.int32), difficult=np.zeros(5, bool),
                 crowd=np.zeros(5, bool))
  h, w = example["image"].shape[:2]
  outs = over_seeds(lambda s: random_expand(to_tf(example), s, CONFIG), num=60)
  expanded = 0
  for out in outs:
    canvas, boxes = out["image"], out["boxes"]
    ch, cw = canvas.shape[:2]
    assert 1.0 <= ch / h < 4.0 + 1 / h and 1.0 <= cw / w < 4.0 + 1 / w
    expanded += (ch, cw) != (h, w)
    for box, original in zip(boxes, example["boxes"]):
      x0, y0, x1, y1 = np.round(box * [cw, ch, cw, ch]).astype(int)
      np.testing.assert_allclose(box * [cw, ch, cw, ch], [x0, y0, x1, y1], atol=1e-3)
      ox0, oy0, ox1, oy1 = np.round(original * [w, h, w, h]).astype(int)
      np.testing.assert_array_equal(canvas[y0:y1, x0:x1], example["image"][oy0:oy1, ox0:ox1])
    # Everything outside the image (the last box) is the fill colour.
    x0, y0, x1, y1 = np.round(boxes[-1] * [cw, ch, cw, ch]).astype(int)
    outside = np.ones((ch, cw), bool)
    outside[y0:y1, x0:x1] = False
    assert np.all(canvas[outside] == [123, 117, 104])
  assert 15 < expanded < 45  # expand_prob 0.5


# ----------------------------------------------------------------------------------------------
# Patch sampler and crop.
# ----------------------------------------------------------------------------------------------


def check_patch(patch, min_iou, boxes, snapped_to=None):
  """The Caffe sampler's guarantees for one sampled patch."""
  x0, y0, x1, y1 = patch
  assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
  whole = np.allclose(patch, [0, 0, 1, 1])
  if whole:
    return True
  assert len(boxes)  # an image without boxes only gets the whole image
  tol = 0 if snapped_to is None else 1.0 / min(snapped_to)
  w, h = x1 - x0, y1 - y0
  assert 0.3 - 2 * tol <= np.sqrt(w * h) <= 1.0 + tol
  assert 0.5 * (1 - 4 * tol) <= w / h <= 2.0 * (1 + 4 * tol)
  assert max(iou_ref(patch, b) for b in boxes) >= min_iou - 1e-6
  centers = [((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) for b in boxes]
  assert any(x0 <= cx <= x1 and y0 <= cy <= y1 for cx, cy in centers)
  if snapped_to is not None:
    hh, ww = snapped_to
    np.testing.assert_allclose(patch * [ww, hh, ww, hh], np.round(patch * [ww, hh, ww, hh]),
                               atol=1e-3)
  return False


@pytest.mark.parametrize("snap", [False, True])
def test_sample_patch_meets_constraints(snap):
  rng = np.random.default_rng(4)
  boxes = make_example(rng, num_boxes=3)["boxes"]
  size = (30, 40) if snap else None
  outs = over_seeds(lambda s: augment.sample_patch(tf.constant(boxes), s, CONFIG, size))
  whole = [check_patch(patch, min_iou, boxes, size) for patch, min_iou in outs]
  # Most seeds get a patch, and every sampler gets picked sometimes.
  assert np.mean(whole) < 0.35
  assert len({float(m) for _, m in outs}) >= 5


def test_sample_patch_high_iou_is_never_met_by_a_tiny_box():
  # A 1% box cannot reach IoU 0.1 with a patch of scale >= 0.3: only 'any' and 'whole' remain.
  boxes = np.array([[0.5, 0.5, 0.51, 0.51]], np.float32)
  outs = over_seeds(lambda s: augment.sample_patch(tf.constant(boxes), s, CONFIG), num=60)
  assert {float(m) for _, m in outs} == {0.0}
  for patch, m in outs:
    check_patch(patch, m, boxes)


def test_sample_patch_without_boxes_is_whole_image():
  outs = over_seeds(lambda s: augment.sample_patch(tf.zeros([0, 4]), s, CONFIG), num=20)
  for patch, min_iou in outs:
    np.testing.assert_array_equal(patch, [0, 0, 1, 1])
    assert min_iou == 0


def test_crop_to_patch_matches_reference():
  rng = np.random.default_rng(5)
  for trial in range(8):
    example = make_example(rng, num_boxes=5)
    px = np.sort(rng.choice(41, 2, replace=False)).tolist()
    py = np.sort(rng.choice(31, 2, replace=False)).tolist()
    patch = np.array([px[0] / 40, py[0] / 30, px[1] / 40, py[1] / 30], np.float32)
    out = crop_to_patch(to_tf(example), tf.constant(patch))
    kept, boxes = crop_ref(example["boxes"], patch)
    np.testing.assert_array_equal(out["labels"].numpy(), example["labels"][kept], f"trial {trial}")
    np.testing.assert_allclose(out["boxes"].numpy(), boxes, atol=1e-5)
    np.testing.assert_array_equal(out["image"].numpy(),
                                  example["image"][py[0]:py[1], px[0]:px[1]])
    check_aligned({k: v.numpy() for k, v in out.items() if k != "image_id"})


def test_crop_to_patch_hand_computed():
  ex = {"image": tf.zeros([10, 10, 3], tf.uint8),
        "boxes": tf.constant([[0.0, 0.0, 0.4, 0.4], [0.6, 0.6, 1.0, 1.0]]),
        "labels": tf.constant([1, 2])}
  out = crop_to_patch(ex, tf.constant([0.1, 0.1, 0.5, 0.5]))
  # Centre (0.2, 0.2) is inside: kept, clipped to (0.1, 0.1, 0.4, 0.4), renormalized by 0.4.
  np.testing.assert_allclose(out["boxes"].numpy(), [[0.0, 0.0, 0.75, 0.75]], atol=1e-6)
  np.testing.assert_array_equal(out["labels"].numpy(), [1])
  assert out["image"].shape == (4, 4, 3)
  # The window step itself, from a 10x10 window at (-2, 3): pixels 1..5 of it, in image pixels.
  _, window = augment.crop_window(ex, tf.constant([-2, 3, 8, 13]), [0.1, 0.1, 0.5, 0.5])
  np.testing.assert_array_equal(window.numpy(), [-1, 4, 3, 8])


def test_random_crop_keeps_centred_boxes_consistently():
  rng = np.random.default_rng(6)
  example = make_example(rng, num_boxes=4)

  def fn(seed):
    patch, _ = augment.sample_patch(example["boxes"], seed, CONFIG, (30, 40))
    return patch, crop_to_patch(to_tf(example), patch)

  for patch, out in over_seeds(fn, num=60):
    kept, boxes = crop_ref(example["boxes"], patch)
    np.testing.assert_array_equal(out["labels"], example["labels"][kept])
    np.testing.assert_allclose(out["boxes"], boxes, atol=1e-5)
    assert np.all((out["boxes"] >= 0) & (out["boxes"] <= 1))
    check_aligned(out)


# ----------------------------------------------------------------------------------------------
# Flip, resize, degenerate boxes.
# ----------------------------------------------------------------------------------------------


def test_flip_hand_computed_and_twice_is_identity():
  rng = np.random.default_rng(7)
  example = make_example(rng)
  once = augment.flip_horizontal(to_tf(example))
  np.testing.assert_array_equal(once["image"].numpy(), example["image"][:, ::-1])
  b = example["boxes"]
  np.testing.assert_allclose(once["boxes"].numpy(),
                             np.stack([1 - b[:, 2], b[:, 1], 1 - b[:, 0], b[:, 3]], 1), atol=1e-6)
  twice = augment.flip_horizontal(once)
  np.testing.assert_array_equal(twice["image"].numpy(), example["image"])
  np.testing.assert_allclose(twice["boxes"].numpy(), b, atol=1e-6)
  # Pixel columns 2..9 of the 40 become 30..37.
  footprint = augment.flip_horizontal({**to_tf(example), "footprint": tf.constant([2, 3, 10, 7])})
  np.testing.assert_array_equal(footprint["footprint"].numpy(), [30, 3, 38, 7])


def test_random_flip_flips_about_half_the_time():
  example = make_example(np.random.default_rng(8))
  outs = over_seeds(lambda s: augment.random_flip(to_tf(example), s), num=200)
  flipped = [not np.array_equal(out["image"], example["image"]) for out in outs]
  assert 0.38 < np.mean(flipped) < 0.62


def test_resize_keeps_constant_image_and_boxes():
  ex = {"image": tf.fill([7, 13, 3], tf.constant(77, tf.uint8)),
        "boxes": tf.constant([[0.1, 0.2, 0.3, 0.4]])}
  for method in ("bilinear", tf.constant(4)):
    out = augment.resize(ex, 11, method)
    assert out["image"].dtype == tf.uint8 and out["image"].shape == (11, 11, 3)
    assert np.all(out["image"].numpy() == 77)
    np.testing.assert_array_equal(out["boxes"].numpy(), ex["boxes"].numpy())


def test_drop_degenerate_hand_computed():
  ex = {"boxes": tf.constant([[0.1, 0.1, 0.2, 0.2], [0.3, 0.3, 0.3005, 0.5],
                              [0.3, 0.3, 0.5, 0.3001]]),
        "labels": tf.constant([1, 2, 3]), "difficult": tf.constant([True, False, True])}
  out = augment.drop_degenerate(ex, 1e-3)
  np.testing.assert_array_equal(out["labels"].numpy(), [1])
  np.testing.assert_array_equal(out["difficult"].numpy(), [True])


# ----------------------------------------------------------------------------------------------
# The full recipes.
# ----------------------------------------------------------------------------------------------


def test_train_preprocess_invariants_over_seeds():
  rng = np.random.default_rng(9)
  example = make_example(rng, num_boxes=6)
  outs = over_seeds(lambda s: augment.train_preprocess(to_tf(example), s, 24, CONFIG))
  counts = []
  for out in outs:
    assert out["image"].shape == (24, 24, 3) and out["image"].dtype == np.uint8
    boxes = out["boxes"]
    assert np.all((boxes >= 0) & (boxes <= 1))
    assert np.all(boxes[:, 2:] - boxes[:, :2] >= CONFIG.min_box_size)
    assert set(out["labels"]) <= set(example["labels"]) and len(set(out["labels"])) == len(boxes)
    check_aligned(out)
    counts.append(len(boxes))
  assert min(counts) < 6 and max(counts) == 6  # crops drop objects, the whole image keeps all


def test_window_steps_chained_equal_the_materialized_steps():
  rng = np.random.default_rng(10)
  example = make_example(rng, num_boxes=4)

  def chained(seed):
    seeds = tf.random.experimental.stateless_split(seed, 2)
    ex, window = to_tf(example), tf.constant([0, 0, 40, 30])
    ex, window = augment.random_expand_window(ex, window, seeds[0], CONFIG)
    ex, window = augment.random_crop_window(ex, window, seeds[1], CONFIG)
    return {**ex, "image": augment.extract_window(ex["image"], window, CONFIG.fill_rgb)}

  def stepwise(seed):
    seeds = tf.random.experimental.stateless_split(seed, 2)
    return random_crop(random_expand(to_tf(example), seeds[0], CONFIG), seeds[1], CONFIG)

  for a, b in zip(over_seeds(chained, num=40), over_seeds(stepwise, num=40)):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key], key)


def test_train_preprocess_equals_the_steps_in_sequence():
  """Exactly; the seeds as documented."""
  rng = np.random.default_rng(10)
  example = make_example(rng, num_boxes=4)
  config = dataclasses.replace(CONFIG, random_interpolation=True)

  def fused(seed):
    return augment.train_preprocess(to_tf(example), seed, 20, config)

  def stepwise(seed):
    seeds = tf.random.experimental.stateless_split(seed, 5)
    ex, window = to_tf(example), tf.constant([0, 0, 40, 30])
    ex, window = augment.random_expand_window(ex, window, seeds[1], config)
    ex, window = augment.random_crop_window(ex, window, seeds[2], config)
    method = tf.random.stateless_uniform((), seeds[3], 0, 5, dtype=tf.int32)
    ex = augment.resize_window(ex, window, 20, config.fill_rgb, method=method)
    ex = augment.random_flip(ex, seeds[4], config.flip_prob)
    ex["photometric"] = augment.photometric_params(seeds[0], config)
    return augment.drop_degenerate(ex, config.min_box_size)

  for a, b in zip(over_seeds(fused, num=40), over_seeds(stepwise, num=40)):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key], key)


def test_train_preprocess_boxes_are_the_materialized_steps_up_to_half_a_pixel():
  rng = np.random.default_rng(20)
  example = make_example(rng, num_boxes=4)
  config = dataclasses.replace(CONFIG, photometric=False)
  size = 20

  def fused(seed):
    return augment.train_preprocess(to_tf(example), seed, size, config)

  def stepwise(seed):
    seeds = tf.random.experimental.stateless_split(seed, 5)
    ex = random_crop(random_expand(to_tf(example), seeds[1], config), seeds[2], config)
    ex = augment.random_flip(augment.resize(ex, size), seeds[4], config.flip_prob)
    return augment.drop_degenerate(ex, config.min_box_size)

  for a, b in zip(over_seeds(fused, num=60), over_seeds(stepwise, num=60)):
    np.testing.assert_array_equal(a["labels"], b["labels"])
    np.testing.assert_allclose(a["boxes"], b["boxes"], atol=0.5 / size + 1e-5)


def test_train_preprocess_boxes_frame_their_object():
  # One bright object on a dark background: after any augmentation, the output pixels well
  # inside its box are the object's, and those well outside are not.
  rng = np.random.default_rng(19)
  image = rng.integers(0, 100, (60, 80, 3), dtype=np.uint8)
  image[8:30, 10:34] = 250
  example = {"image": image, "boxes": np.array([[10 / 80, 8 / 60, 34 / 80, 30 / 60]], np.float32),
             "labels": np.array([1], np.int32)}
  config = dataclasses.replace(CONFIG, photometric=False)
  size = 32
  # Bilinear reads one source pixel around each sample; crops upsample at most ~2x here.
  margin = 3.0
  centres = np.arange(size) + 0.5
  inside_seen = 0
  for out in over_seeds(lambda s: augment.train_preprocess(to_tf(example), s, size, config)):
    if not len(out["boxes"]):
      continue
    x0, y0, x1, y1 = out["boxes"][0] * size
    inside = (((centres[:, None] >= y0 + margin) & (centres[:, None] <= y1 - margin))
              & ((centres >= x0 + margin) & (centres <= x1 - margin)))
    outside = (((centres[:, None] < y0 - margin) | (centres[:, None] > y1 + margin))
               | ((centres < x0 - margin) | (centres > x1 + margin)))
    assert np.all(out["image"][inside] == 250)
    assert np.all(out["image"][outside] < 200)
    inside_seen += inside.sum() > 0
  assert inside_seen > NUM_SEEDS // 2


def test_train_preprocess_footprint_marks_the_image_pixels():
  # Image pixels above the fill colour in every channel: the footprint is the non-fill output,
  # through zoom-out, crop and flip.
  rng = np.random.default_rng(21)
  example = make_example(rng, num_boxes=3)
  example["image"] = rng.integers(140, 256, example["image"].shape, dtype=np.uint8)
  zoomed = 0
  for out in over_seeds(lambda s: augment.train_preprocess(to_tf(example), s, 20, CONFIG)):
    x0, y0, x1, y1 = out["footprint"]
    inside = np.zeros((20, 20), bool)
    inside[y0:y1, x0:x1] = True
    np.testing.assert_array_equal(np.all(out["image"] >= 140, axis=-1), inside)
    np.testing.assert_array_equal(np.all(out["image"] == CONFIG.fill_rgb, axis=-1), ~inside)
    zoomed += not inside.all()
  assert zoomed > 10


def test_train_preprocess_is_reproducible_and_seed_dependent():
  example = make_example(np.random.default_rng(11))
  first = over_seeds(lambda s: augment.train_preprocess(to_tf(example), s, 16), num=20)
  again = over_seeds(lambda s: augment.train_preprocess(to_tf(example), s, 16), num=20)
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["boxes"], b["boxes"])
  # The pixels repeat where two seeds both keep the whole image unflipped; the photometric
  # values (distorted in the train step) still tell them apart.
  outputs = {a["image"].tobytes() + a["photometric"].tobytes() for a in first}
  assert len(outputs) == len(first)


def test_train_preprocess_without_boxes():
  example = make_example(np.random.default_rng(12), num_boxes=0)
  for out in over_seeds(lambda s: augment.train_preprocess(to_tf(example), s, 16), num=40):
    assert out["image"].shape == (16, 16, 3)
    assert out["boxes"].shape == (0, 4) and out["labels"].shape == (0,)


def test_train_preprocess_drops_boxes_that_end_degenerate():
  example = make_example(np.random.default_rng(13))
  example["boxes"][0] = [0.5, 0.5, 0.5003, 0.9]  # 0.0003 wide: dropped even without cropping
  out = augment.train_preprocess(to_tf(example), [0, 0], 16, augment.AugmentConfig.none())
  np.testing.assert_array_equal(out["labels"].numpy(), example["labels"][1:])
  check_aligned({k: v.numpy() for k, v in out.items() if k != "image_id"})


def test_no_augmentation_equals_eval_resize():
  example = make_example(np.random.default_rng(14))
  train = augment.train_preprocess(to_tf(example), [1, 2], 16, augment.AugmentConfig.none())
  ev = augment.eval_preprocess(to_tf(example), 16)
  np.testing.assert_array_equal(train["image"].numpy(), ev["image"].numpy())
  np.testing.assert_array_equal(ev["boxes"].numpy(), example["boxes"])
  np.testing.assert_array_equal(ev["orig_size"].numpy(), [30, 40])
  assert ev["image_id"].numpy() == b"img"


def test_bad_example_is_rejected():
  with pytest.raises(ValueError, match="image must be uint8"):
    augment.train_preprocess({"image": tf.zeros([4, 4, 3]), "boxes": tf.zeros([0, 4])}, [0, 0], 8)
  with pytest.raises(ValueError, match="no 'boxes'"):
    augment.eval_preprocess({"image": tf.zeros([4, 4, 3], tf.uint8)}, 8)
