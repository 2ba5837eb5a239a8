"""Tests for the synthetic shapes dataset (ssd_jax.data.synthetic_shapes)."""

import numpy as np
import pytest

from ssd_jax import data
from ssd_jax.data import sources
from ssd_jax.data import synthetic_shapes


def inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
  """Whether box points ``(u, v)`` in ``[-1, 1]^2`` are in the exact (continuous) shape."""
  if shape == "circle":
    return u * u + v * v <= 1
  if shape == "square":
    return np.ones_like(u, bool)
  if shape == "triangle":  # Apex at the top centre, base along the bottom.
    return np.abs(u) <= (v + 1) / 2
  if shape == "cross":  # A plus sign with arms one third of the box wide.
    return (np.abs(u) <= 1 / 3) | (np.abs(v) <= 1 / 3)
  if shape == "diamond":
    return np.abs(u) + np.abs(v) <= 1
  return (0.36 <= u * u + v * v) & (u * u + v * v <= 1)  # ring


def reference_touched(shape: str, h: int, w: int, margin: float, samples: int) -> np.ndarray:
  """Loop over pixels: ``[h, w]`` whether a ``samples x samples`` grid over the pixel square,
  grown by ``margin`` pixels on each side (shrunk if negative), has a point in the shape."""
  grid = np.linspace(-margin, 1 + margin, samples)
  a, b = np.meshgrid(grid, grid)
  touched = np.zeros((h, w), bool)
  for y in range(h):
    for x in range(w):
      touched[y, x] = inside(shape, (x + a) / w * 2 - 1, (y + b) / h * 2 - 1).any()
  return touched


def extent(mask: np.ndarray) -> tuple[int, int, int, int]:
  """Loop-based ``(x0, y0, x1, y1)`` (exclusive ends) of the True pixels."""
  xs, ys = [], []
  for y in range(mask.shape[0]):
    for x in range(mask.shape[1]):
      if mask[y, x]:
        xs.append(x)
        ys.append(y)
  return min(xs), min(ys), max(xs) + 1, max(ys) + 1


@pytest.mark.parametrize("shape", synthetic_shapes.SHAPE_NAMES)
@pytest.mark.parametrize("h,w", [(9, 18), (20, 20), (31, 12), (6, 7), (2, 2)])
def test_shape_masks(shape, h, w):
  mask = synthetic_shapes.shape_mask(shape, h, w)
  # Conservative rasterization: every pixel the shape touches (grid points just inside the pixel
  # square, so that touching in a single boundary point does not count whatever the rounding) ...
  assert np.all(mask[reference_touched(shape, h, w, margin=-1e-6, samples=9)])
  # ... and no pixel the shape does not come near (a grid over the pixel grown by 1/4 pixel).
  assert not np.any(mask & ~reference_touched(shape, h, w, margin=0.25, samples=11))
  # Every shape touches all four sides of its box.
  assert extent(mask) == (0, 0, w, h)


def test_determinism_and_dataset_matches_generate():
  a, b = data.synthetic(num_examples=6), data.synthetic(num_examples=6)
  examples = list(a.as_dataset().as_numpy_iterator())
  assert len(examples) == 6
  for i, ex in enumerate(examples):
    ref = b.generate(i)
    assert ex["image_id"].decode() == ref["image_id"] == f"train_{i:06d}"
    for key in ("image", "boxes", "labels", "difficult", "crowd"):
      assert ex[key].dtype == ref[key].dtype, key
      np.testing.assert_array_equal(ex[key], ref[key], err_msg=key)
  assert not np.array_equal(a.generate(0)["image"], a.generate(1)["image"])
  test = data.synthetic("test", num_examples=2)
  assert test.num_examples == 2 and data.synthetic("test").num_examples == 200
  assert data.synthetic().num_examples == 2000
  assert not np.array_equal(a.generate(0)["image"], test.generate(0)["image"])
  other_seed = data.synthetic(num_examples=6, seed=1)
  assert not np.array_equal(a.generate(0)["image"], other_seed.generate(0)["image"])


@pytest.mark.parametrize("kwargs", [
    {},
    dict(scale_range=(0.3, 0.3), aspect_ratio_range=(2.0, 2.0), image_size=96),
    dict(scale_range=(0.05, 0.2), aspect_ratio_range=(0.25, 0.5), num_classes=6,
         min_objects=2, max_objects=6),
])
def test_boxes_sizes_and_aspect_ratios(kwargs):
  source = data.synthetic(num_examples=40, **kwargs)
  size = source.image_size
  s_lo, s_hi = kwargs.get("scale_range", (0.1, 0.6))
  a_lo, a_hi = kwargs.get("aspect_ratio_range", (0.5, 2.0))
  counts = []
  for i in range(source.num_examples):
    ex = source.generate(i, with_masks=True)
    assert ex["image"].shape == (size, size, 3) and ex["image"].dtype == np.uint8
    n = len(ex["labels"])
    counts.append(n)
    assert ex["boxes"].shape == (n, 4) and ex["masks"].shape == (n, size, size)
    assert np.all((ex["labels"] >= 1) & (ex["labels"] <= len(source.class_names)))
    covered = np.zeros((size, size), bool)
    for k in range(n - 1, -1, -1):  # Later objects are drawn on top.
      x0, y0, x1, y1 = extent(ex["masks"][k])
      # The box is the exact extent of the drawn shape, in [0, 1].
      np.testing.assert_array_equal(ex["boxes"][k] * size, [x0, y0, x1, y1])
      w, h = x1 - x0, y1 - y0
      # Up to rounding w and h to whole pixels, the size and aspect ratio are in range.
      assert s_lo * size <= np.sqrt((w + 0.5) * (h + 0.5))
      assert np.sqrt((w - 0.5) * (h - 0.5)) <= s_hi * size
      assert (w - 0.5) / (h + 0.5) <= a_hi and a_lo <= (w + 0.5) / (h - 0.5)
      visible = ex["masks"][k] & ~covered
      covered |= ex["masks"][k]
      # No object is hidden, and its visible pixels have one colour (its own).
      assert visible.sum() >= 0.2 * ex["masks"][k].sum()
      assert len(np.unique(ex["image"][visible], axis=0)) == 1
  assert min(counts) >= source.min_objects and max(counts) <= source.max_objects


def test_pairwise_overlap_is_bounded():
  source = data.synthetic(num_examples=30, min_objects=4, max_objects=4, max_iou=0.2)
  for i in range(source.num_examples):
    boxes = source.generate(i)["boxes"]
    for a in range(len(boxes)):
      for b in range(a + 1, len(boxes)):
        inter = (max(0.0, min(boxes[a, 2], boxes[b, 2]) - max(boxes[a, 0], boxes[b, 0]))
                 * max(0.0, min(boxes[a, 3], boxes[b, 3]) - max(boxes[a, 1], boxes[b, 1])))
        areas = [(bx[2] - bx[0]) * (bx[3] - bx[1]) for bx in (boxes[a], boxes[b])]
        assert inter / (sum(areas) - inter) <= 0.2 + 1e-6
        assert inter / min(areas) <= 0.5 + 1e-6


def test_class_is_the_shape():
  source = data.synthetic(num_examples=30, num_classes=2, scale_range=(0.4, 0.5),
                          aspect_ratio_range=(1.0, 1.0), min_objects=1, max_objects=1)
  assert source.class_names == ["circle", "square"]
  fill = {1: [], 2: []}
  for i in range(source.num_examples):
    ex = source.generate(i, with_masks=True)
    x0, y0, x1, y1 = np.round(ex["boxes"][0] * source.image_size).astype(int)
    fill[int(ex["labels"][0])].append(ex["masks"][0].sum() / ((x1 - x0) * (y1 - y0)))
  assert fill[1] and fill[2]
  # Ellipses (pi / 4 of their box, plus the partly covered border pixels) and full boxes.
  assert np.all((np.array(fill[1]) > np.pi / 4) & (np.array(fill[1]) < np.pi / 4 + 0.05))
  np.testing.assert_allclose(fill[2], 1.0)


def test_shuffle_skip_shard():
  source = data.synthetic(num_examples=11, image_size=32)
  kwargs = dict(shuffle=True, seed=5, skip=1, shard=(1, 3))
  ids = [ex["image_id"].decode() for ex in source.as_dataset(**kwargs).as_numpy_iterator()]
  assert ids == [f"train_{i:06d}" for i in sources.example_order(11, **kwargs)]
  assert len(ids) == source.shard_size((1, 3)) - 1 == 3


@pytest.mark.parametrize("kwargs,match", [
    (dict(num_classes=7), "num_classes"),
    (dict(scale_range=(0.5, 0.2)), "scale_range"),
    (dict(aspect_ratio_range=(0.0, 2.0)), "aspect_ratio_range"),
    (dict(scale_range=(0.9, 1.0), aspect_ratio_range=(3.0, 4.0)), "fits"),
    (dict(min_objects=3, max_objects=2), "min_objects"),
    (dict(split="validation"), "num_examples"),
    (dict(max_iou=1.5), "max_iou"),
])
def test_invalid_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    data.synthetic(**kwargs)
