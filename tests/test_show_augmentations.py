"""Tests of the augmentation grid: ``visualize.augmentation_panels`` (panel layout and content)
and the PNG of ``experiments/show_augmentations.py``."""

import os
import subprocess

import numpy as np
from PIL import Image
import pytest

from ssd_jax import data, visualize
from ssd_jax.data import augment
from tests import forkserver

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE_SIZE, OUT_SIZE = 32, 24


def _source(num_examples=6):
  return data.synthetic(split="train", num_examples=num_examples, image_size=SOURCE_SIZE,
                        min_objects=1, max_objects=3)


def bilinear_reference(image: np.ndarray, size: int) -> np.ndarray:
  """Bilinear warp to ``size x size`` with half-pixel centres, one output pixel at a time."""
  h, w = image.shape[:2]
  out = np.zeros((size, size, 3))
  for i in range(size):
    for j in range(size):
      y = min(max((i + 0.5) * h / size - 0.5, 0.0), h - 1.0)
      x = min(max((j + 0.5) * w / size - 0.5, 0.0), w - 1.0)
      y0, x0 = int(np.floor(y)), int(np.floor(x))
      y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
      dy, dx = y - y0, x - x0
      top = (1 - dx) * image[y0, x0] + dx * image[y0, x1]
      bottom = (1 - dx) * image[y1, x0] + dx * image[y1, x1]
      out[i, j] = (1 - dy) * top + dy * bottom
  return out


def test_rows_start_with_the_original_then_its_augmentations():
  source = _source()
  panels = visualize.augmentation_panels(source, augment.AugmentConfig(), OUT_SIZE, num=5,
                                         per_row=2, seed=3)
  # 3 rows: original + 2, original + 2, original + 1.
  assert len(panels) == 8
  order = data.example_order(source.num_examples, shuffle=True, seed=3)
  originals = {0: order[0], 3: order[1], 6: order[2]}
  for position, index in originals.items():
    expected = source.generate(int(index))
    np.testing.assert_array_equal(panels[position]["image"], expected["image"])
    np.testing.assert_allclose(panels[position]["boxes"], expected["boxes"] * SOURCE_SIZE,
                               rtol=1e-6)
    np.testing.assert_array_equal(panels[position]["labels"], expected["labels"])
  row_of = [0, 0, 0, 3, 3, 3, 6, 6]
  for position, panel in enumerate(panels):
    if position in originals:
      continue
    assert panel["image"].shape == (OUT_SIZE, OUT_SIZE, 3) and panel["image"].dtype == np.uint8
    boxes = panel["boxes"]
    assert np.all((boxes >= 0) & (boxes <= OUT_SIZE)), boxes
    assert np.all(boxes[:, 2:] > boxes[:, :2]), boxes
    assert set(panel["labels"]) <= set(panels[row_of[position]]["labels"])


def test_same_seed_same_panels_other_seed_other_augmentations():
  source = _source()
  run = lambda seed: visualize.augmentation_panels(
      source, augment.AugmentConfig(), OUT_SIZE, num=4, per_row=4, seed=seed)
  first, again, other_seed = run(0), run(0), run(1)
  for a, b in zip(first, again):
    for key in ("image", "boxes", "labels"):
      np.testing.assert_array_equal(a[key], b[key])
  # The four augmentations of one image differ from each other...
  images = [p["image"].astype(int) for p in first[1:]]
  assert all(np.abs(images[i] - images[j]).max() > 0 for i in range(4) for j in range(i))
  # ...and another seed picks other images or other augmentations.
  assert any(np.abs(a["image"].astype(int) - b["image"].astype(int)).max() > 0
             for a, b in zip(first[1:], other_seed[1:]))


def test_without_augmentation_a_sample_is_the_resized_original():
  panels = visualize.augmentation_panels(_source(), augment.AugmentConfig.none(), OUT_SIZE,
                                         num=2, per_row=2)
  original = panels[0]
  for sample in panels[1:]:
    np.testing.assert_allclose(sample["boxes"], original["boxes"] * OUT_SIZE / SOURCE_SIZE,
                               rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(sample["labels"], original["labels"])
    expected = bilinear_reference(original["image"].astype(np.float64), OUT_SIZE)
    np.testing.assert_allclose(sample["image"], expected, atol=1.0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(num=0, per_row=2, image_size=OUT_SIZE), "num must be >= 1"),
    (dict(num=4, per_row=0, image_size=OUT_SIZE), "per_row must be >= 1"),
    (dict(num=4, per_row=2, image_size=0), "image_size must be >= 1"),
    (dict(num=7, per_row=1, image_size=OUT_SIZE), "the source has 6 examples"),
])
def test_invalid_arguments_raise(kwargs, match):
  with pytest.raises(ValueError, match=match):
    visualize.augmentation_panels(_source(), augment.AugmentConfig(), **kwargs)


def test_command_line_writes_the_grid(tmp_path):
  output = tmp_path / "grid.png"
  cmd = [*forkserver.command("experiments.show_augmentations"), "--num=4", "--per_row=2",
         f"--output={output}", "--config.data.num_train_examples=8"]
  result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stdout + result.stderr
  with Image.open(output) as png:
    # visualize.draw_grid: 3 x 3 inch cells at 80 dpi; 2 rows of 1 original + 2 samples.
    assert png.format == "PNG"
    assert png.size == (3 * 240, 2 * 240)
    pixels = np.asarray(png.convert("RGB"))
  assert pixels.std() > 10  # images were drawn, not a blank canvas
