"""A built-in synthetic detection dataset: filled shapes on textured backgrounds, no files.

Each image is generated on the fly from ``(seed, split, index)`` with NumPy, so any example can be
re-created exactly, and the object sizes and aspect ratios follow configurable ranges: a
controlled ground truth for prior-box (scale / aspect-ratio) ablations. The class of an object is
its shape; colours are random, so the shape is the only cue. Default: 4 classes
(``circle, square, triangle, cross``) on 128x128 images, 2000 train / 200 test examples.

Generation of one image:
  * background: per-pixel noise between two close colours, a linear gradient between them, or
    soft stripes (random angle and frequency), each with a random kind.
  * ``n ~ U{min_objects..max_objects}`` objects, each with a uniform class, a size
    ``s = sqrt(w * h) / image_size ~ U(scale_range)`` and an aspect ratio ``w / h`` log-uniform in
    ``aspect_ratio_range``, so ``w = s * sqrt(a)``, ``h = s / sqrt(a)`` (rounded to pixels, at
    least 2). The position is uniform among placements inside the image whose box has IoU <=
    ``max_iou`` with every earlier box and covers at most half of the smaller box (so no object is
    hidden); after 50 rejected positions the object is left out (rare unless crowded).
  * the shape is inscribed in its box: ellipse (circle), rectangle (square), triangle (apex up),
    plus-sign cross, rhombus (diamond), annulus (ring); its colour contrasts with the background.
  * the shape is rasterized conservatively (every pixel it touches), so the ground-truth box, the
    exact pixel extent of the drawn shape (before any later shape overlaps it), is the placed box:
    its size and aspect ratio are the sampled ones up to rounding to whole pixels. Its ``area`` is
    that box's ``w * h`` in pixels (not the shape's pixel count).
"""

import zlib
from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from ssd_jax.data import sources

SHAPE_NAMES = ("circle", "square", "triangle", "cross", "diamond", "ring")
DEFAULT_NUM_EXAMPLES = {"train": 2000, "test": 200}

_PLACEMENT_TRIES = 50
_SIZE_TRIES = 100
_MAX_COVERED_FRACTION = 0.5  # of the smaller box, by any other single box.
_MIN_SIDE_PIXELS = 2
# Minimum RGB distance between an object's colour and the mean background under its box.
_MIN_CONTRAST = 110.0
_RING_HOLE = 0.6  # Inner radius of the ring relative to the outer one.


def synthetic(split: str = "train", num_examples: int | None = None, image_size: int = 128,
              num_classes: int = 4, min_objects: int = 1, max_objects: int = 4,
              scale_range: Sequence[float] = (0.1, 0.6),
              aspect_ratio_range: Sequence[float] = (0.5, 2.0), max_iou: float = 0.3,
              seed: int = 0) -> "SyntheticSource":
  """The synthetic shapes dataset (see the module docstring).

  Args:
    split: ``'train'`` or ``'test'`` (any other name works with an explicit ``num_examples``);
      the split enters the per-image seed, so splits differ.
    num_examples: number of images; default 2000 for train, 200 for test.
    image_size: side of the square images, pixels.
    num_classes: ``1..6``: the first ``num_classes`` of ``SHAPE_NAMES``.
    min_objects: minimum objects per image (>= 0).
    max_objects: maximum objects per image.
    scale_range: ``(lo, hi)`` of ``sqrt(w * h) / image_size``.
    aspect_ratio_range: ``(lo, hi)`` of ``w / h``.
    max_iou: maximum IoU between two objects' boxes.
    seed: dataset seed; ``(seed, split, index)`` determines an image.

  Raises:
    ValueError: for an invalid argument, naming it.
  """
  if num_examples is None:
    if split not in DEFAULT_NUM_EXAMPLES:
      raise ValueError(f"split {split!r} has no default size; pass num_examples")
    num_examples = DEFAULT_NUM_EXAMPLES[split]
  return SyntheticSource(split, num_examples, image_size, num_classes, min_objects, max_objects,
                         tuple(scale_range), tuple(aspect_ratio_range), max_iou, seed)


class SyntheticSource(sources.IndexedSource):
  """See ``synthetic``; ``generate(index)`` gives one example as NumPy arrays."""

  def __init__(self, split: str, num_examples: int, image_size: int, num_classes: int,
               min_objects: int, max_objects: int, scale_range: tuple[float, float],
               aspect_ratio_range: tuple[float, float], max_iou: float, seed: int):
    if num_examples < 0:
      raise ValueError(f"num_examples must be >= 0, got {num_examples}")
    if image_size < 8:
      raise ValueError(f"image_size must be >= 8, got {image_size}")
    if not 1 <= num_classes <= len(SHAPE_NAMES):
      raise ValueError(f"num_classes must be in 1..{len(SHAPE_NAMES)}, got {num_classes}")
    if not 0 <= min_objects <= max_objects:
      raise ValueError(f"need 0 <= min_objects <= max_objects, got {min_objects}, {max_objects}")
    for name, (lo, hi) in (("scale_range", scale_range),
                           ("aspect_ratio_range", aspect_ratio_range)):
      if not 0 < lo <= hi:
        raise ValueError(f"{name} must be (lo, hi) with 0 < lo <= hi, got {(lo, hi)}")
    # Some (scale, aspect) in the ranges must fit in the image: the aspect closest to 1 is best.
    aspect = min(max(1.0, aspect_ratio_range[0]), aspect_ratio_range[1])
    if scale_range[0] * max(np.sqrt(aspect), 1 / np.sqrt(aspect)) > 1:
      raise ValueError(f"no box with scale in {scale_range} and aspect ratio in "
                       f"{aspect_ratio_range} fits in the image")
    if not 0 <= max_iou <= 1:
      raise ValueError(f"max_iou must be in [0, 1], got {max_iou}")
    self.split = split
    self._num_examples = int(num_examples)
    self.image_size = int(image_size)
    self.class_names = list(SHAPE_NAMES[:num_classes])
    self.min_objects, self.max_objects = int(min_objects), int(max_objects)
    self.scale_range, self.aspect_ratio_range = scale_range, aspect_ratio_range
    self.max_iou = max_iou
    self.seed = int(seed)
    self._split_seed = zlib.crc32(split.encode())  # Stable across processes, unlike hash().

  @property
  def num_examples(self) -> int:
    return self._num_examples

  def generate(self, index: int, with_masks: bool = False) -> dict[str, Any]:
    """Example ``index`` as NumPy arrays (same values as ``as_dataset``).

    Returns:
      The example dict of ``sources`` (``image_id`` a Python str). With ``with_masks``, also
      ``masks``: ``[N, S, S]`` bool, each object's full shape (also where a later object covers
      it).
    """
    rng = np.random.default_rng([self.seed, self._split_seed, int(index)])
    size = self.image_size
    image = _background(rng, size)  # [3, S, S]: per-channel 2-D ops are much faster in NumPy.
    placed = _layout(rng, size, rng.integers(self.min_objects, self.max_objects + 1),
                     self.scale_range, self.aspect_ratio_range, self.max_iou)
    labels = rng.integers(1, len(self.class_names) + 1, size=len(placed)).astype(np.int32)
    boxes = np.zeros((len(placed), 4), np.float32)
    areas = np.zeros(len(placed), np.float32)
    masks = np.zeros((len(placed), size, size), bool) if with_masks else None
    for k, ((x0, y0, w, h), label) in enumerate(zip(placed, labels)):
      mask = shape_mask(SHAPE_NAMES[label - 1], h, w)
      region = image[:, y0:y0 + h, x0:x0 + w]
      colour = _contrasting_colour(rng, region.mean(axis=(1, 2)))
      for c in range(3):
        region[c][mask] = colour[c]
      rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
      boxes[k] = np.array([x0 + cols[0], y0 + rows[0], x0 + cols[-1] + 1, y0 + rows[-1] + 1],
                          np.float32) / size
      areas[k] = (cols[-1] + 1 - cols[0]) * (rows[-1] + 1 - rows[0])
      if with_masks:
        masks[k, y0:y0 + h, x0:x0 + w] = mask
    example = {
        "image": np.round(image).astype(np.uint8).transpose(1, 2, 0).copy(),
        "boxes": boxes,
        "labels": labels,
        "difficult": np.zeros(len(labels), bool),
        "crowd": np.zeros(len(labels), bool),
        "area": areas,
        "image_id": f"{self.split}_{int(index):06d}",
    }
    if with_masks:
      example["masks"] = masks
    return example

  def _load(self, order: tf.Tensor) -> tf.data.Dataset:
    size = self.image_size

    def arrays(index):
      ex = self.generate(int(index))
      return ex["image"], ex["boxes"], ex["labels"], ex["area"]

    @tf.autograph.experimental.do_not_convert
    def example(index):
      image, boxes, labels, area = tf.numpy_function(
          arrays, [index], [tf.uint8, tf.float32, tf.int32, tf.float32], stateful=False)
      image.set_shape([size, size, 3])
      boxes.set_shape([None, 4])
      labels.set_shape([None])
      area.set_shape([None])
      no_flag = tf.zeros_like(labels, tf.bool)
      return {
          "image": image, "boxes": boxes, "labels": labels, "difficult": no_flag,
          "crowd": no_flag, "area": area,
          "image_id": tf.strings.join([self.split, tf.strings.as_string(index, width=6,
                                                                        fill="0")], "_"),
      }

    return tf.data.Dataset.from_tensor_slices(order).map(example,
                                                         num_parallel_calls=tf.data.AUTOTUNE)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
  """``[3, S, S]`` float32 texture in ``[0, 255]``: noise, gradient or stripes."""
  c1 = rng.uniform(0, 255, 3).astype(np.float32)
  c2 = np.clip(c1 + rng.uniform(20, 60, 3) * np.sign(rng.uniform(-1, 1, 3)), 0, 255)
  kind = rng.integers(3)
  if kind == 0:
    t = rng.random((size, size), np.float32)
  else:
    theta = rng.uniform(0, np.pi)
    coords = np.arange(size, dtype=np.float32) / size
    # proj(y, x) = a * x + b * y (separable, so the stripes need only 1-D sines).
    a, b = np.float32(np.cos(theta)), np.float32(np.sin(theta))
    if kind == 1:
      t = a * coords[None, :] + b * coords[:, None]
      t = (t - t.min()) / (t.max() - t.min())
    else:
      freq, phase = 2 * np.pi * rng.uniform(3, 10), rng.uniform(0, 2 * np.pi)
      ax, by = freq * a * coords, freq * b * coords + phase
      # sin(ax + by) = sin(ax) cos(by) + cos(ax) sin(by).
      t = 0.5 + 0.5 * (np.sin(ax)[None, :] * np.cos(by)[:, None]
                       + np.cos(ax)[None, :] * np.sin(by)[:, None])
  image = np.empty((3, size, size), np.float32)
  for c in range(3):
    image[c] = c1[c] + (c2[c] - c1[c]) * t
  return image


def _layout(rng: np.random.Generator, size: int, num_objects: int,
            scale_range: tuple[float, float], aspect_ratio_range: tuple[float, float],
            max_iou: float) -> list[tuple[int, int, int, int]]:
  """Up to ``num_objects`` non-hiding pixel boxes ``(x0, y0, w, h)`` (module docstring)."""
  log_aspect = np.log(aspect_ratio_range)
  placed = np.zeros((0, 4), np.int64)  # x0, y0, x1, y1
  for _ in range(num_objects):
    for _ in range(_SIZE_TRIES):
      scale = rng.uniform(*scale_range) * size
      aspect = np.exp(rng.uniform(*log_aspect))
      w = max(_MIN_SIDE_PIXELS, int(round(scale * np.sqrt(aspect))))
      h = max(_MIN_SIDE_PIXELS, int(round(scale / np.sqrt(aspect))))
      if w <= size and h <= size:
        break
    else:
      continue
    x0 = rng.integers(0, size - w + 1, _PLACEMENT_TRIES)
    y0 = rng.integers(0, size - h + 1, _PLACEMENT_TRIES)
    candidates = np.stack([x0, y0, x0 + w, y0 + h], axis=1)  # [T, 4]
    ok = _acceptable(candidates, placed, max_iou)
    if ok.any():
      placed = np.concatenate([placed, candidates[np.argmax(ok)][None]])
  return [(int(x0), int(y0), int(x1 - x0), int(y1 - y0)) for x0, y0, x1, y1 in placed]


def _acceptable(candidates: np.ndarray, placed: np.ndarray, max_iou: float) -> np.ndarray:
  """``[T]`` bool: candidate boxes ``[T, 4]`` compatible with every placed box ``[P, 4]``."""
  lt = np.maximum(candidates[:, None, :2], placed[None, :, :2])
  rb = np.minimum(candidates[:, None, 2:], placed[None, :, 2:])
  wh = np.maximum(rb - lt, 0)
  inter = (wh[..., 0] * wh[..., 1]).astype(np.float64)  # [T, P]
  wh_c, wh_p = candidates[:, 2:] - candidates[:, :2], placed[:, 2:] - placed[:, :2]
  area_c = (wh_c[:, 0] * wh_c[:, 1])[:, None]
  area_p = (wh_p[:, 0] * wh_p[:, 1])[None, :]
  iou = inter / (area_c + area_p - inter)
  covered = inter / np.minimum(area_c, area_p)
  return np.all((iou <= max_iou) & (covered <= _MAX_COVERED_FRACTION), axis=1)


def shape_mask(shape: str, h: int, w: int) -> np.ndarray:
  """``[h, w]`` bool: the pixels that the shape inscribed in an ``h x w`` box touches.

  Conservative rasterization: a pixel is in if its square intersects the shape. Every shape
  touches all four sides of its box, so the mask's extent is exactly the box.
  """
  # Box coordinates u, v in [-1, 1]; a pixel spans its centre +- (du, dv).
  du, dv = 1 / w, 1 / h
  u = np.abs((np.arange(w) + 0.5) * 2 * du - 1)[None, :]
  v = ((np.arange(h) + 0.5) * 2 * dv - 1)[:, None]  # Signed: the triangle is not symmetric in v.
  near_u, near_v = np.maximum(u - du, 0), np.maximum(np.abs(v) - dv, 0)  # Closest to the centre.
  far_u, far_v = u + du, np.abs(v) + dv
  masks = {
      "circle": lambda: near_u**2 + near_v**2 <= 1,
      "square": lambda: np.ones((h, w), bool),
      "triangle": lambda: near_u <= (v + dv + 1) / 2,  # Apex at the top centre.
      "cross": lambda: (near_u <= 1 / 3) | (near_v <= 1 / 3),
      "diamond": lambda: near_u + near_v <= 1,
      "ring": lambda: (near_u**2 + near_v**2 <= 1) & (far_u**2 + far_v**2 >= _RING_HOLE**2),
  }
  return np.broadcast_to(masks[shape](), (h, w))


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
  """A random RGB colour at least ``_MIN_CONTRAST`` from ``background`` ``[3]`` (else the
  farthest of several draws)."""
  candidates = rng.uniform(0, 255, (16, 3))
  distance = np.linalg.norm(candidates - background, axis=1)
  good = distance >= _MIN_CONTRAST
  return candidates[np.argmax(good) if good.any() else np.argmax(distance)]
