"""ssd_jax.priors against Caffe's PriorBox layer (loop reference) and the paper's numbers."""

import dataclasses
import math
import subprocess
import sys

import numpy as np
import pytest

from ssd_jax import priors
from tests import reference_ssd as ref


def _caffe(spec: priors.PriorSpec) -> np.ndarray:
  return ref.caffe_priors(spec.image_size, spec.feature_map_sizes, spec.steps, spec.min_sizes,
                          spec.max_sizes, spec.aspect_ratios, spec.flip, spec.offset)


@pytest.mark.parametrize("name,count", [("SSD300_VOC", 8732), ("SSD300_COCO", 8732),
                                        ("SSD512_VOC", 24564)])
def test_presets_match_caffe(name, count):
  spec = priors.PRESETS[name]
  got = priors.generate(spec)
  assert got.shape == (count, 4) and got.dtype == np.float32
  assert spec.num_priors == count
  np.testing.assert_allclose(got, _caffe(spec), atol=1e-6)


def test_ssd300_box_counts_per_layer():
  spec = priors.SSD300_VOC
  assert spec.boxes_per_cell == (4, 6, 6, 6, 4, 4)
  assert spec.boxes_per_layer == (38 * 38 * 4, 19 * 19 * 6, 10 * 10 * 6, 5 * 5 * 6, 3 * 3 * 4, 4)


def test_ssd300_voc_sizes_are_caffe_min_max_sizes():
  """Caffe ssd_pascal.py: min_ratio 20, max_ratio 90, step 17, conv4_3 at 10% of 300."""
  spec, p = priors.SSD300_VOC, priors.generate(priors.SSD300_VOC)
  min_sizes = [30, 60, 111, 162, 213, 264]
  max_sizes = [60, 111, 162, 213, 264, 315]
  start = 0
  for k, n in enumerate(spec.boxes_per_layer):
    layer = p[start:start + n] * 300
    start += n
    first_cell = layer[:spec.boxes_per_cell[k]]
    np.testing.assert_allclose(first_cell[0, 2:], [min_sizes[k]] * 2, rtol=1e-5)
    np.testing.assert_allclose(first_cell[1, 2:], [math.sqrt(min_sizes[k] * max_sizes[k])] * 2,
                               rtol=1e-5)
    s = min_sizes[k]
    np.testing.assert_allclose(first_cell[2, 2:], [s * math.sqrt(2), s / math.sqrt(2)], rtol=1e-5)
    np.testing.assert_allclose(first_cell[3, 2:], [s / math.sqrt(2), s * math.sqrt(2)], rtol=1e-5)
    if spec.boxes_per_cell[k] == 6:
      np.testing.assert_allclose(first_cell[4, 2:], [s * math.sqrt(3), s / math.sqrt(3)],
                                 rtol=1e-5)
  # Caffe centres: (j + 0.5) * step, e.g. conv4_3 second cell at x = 1.5 * 8 = 12 px.
  np.testing.assert_allclose(p[4, :2] * 300, [12, 4], rtol=1e-5)


def test_paper_linear_scales():
  np.testing.assert_allclose(priors.linear_scales(6, 0.2, 0.9), [0.2, 0.34, 0.48, 0.62, 0.76, 0.9])
  spec = priors.from_linear_scales((38, 19, 10, 5, 3, 1))
  np.testing.assert_allclose(spec.scales, [0.2, 0.34, 0.48, 0.62, 0.76, 0.9], atol=1e-9)
  # s'_k = sqrt(s_k s_{k+1}), with s_7 one step past s_max.
  np.testing.assert_allclose(np.array(spec.max_sizes) / 300, [0.34, 0.48, 0.62, 0.76, 0.9, 1.04])


def test_from_linear_scales_first_scale_and_paper_centres():
  spec = priors.from_linear_scales((38, 19, 10, 5, 3, 1), 0.2, 0.9, [(2,), (2, 3), (2, 3),
                                                                    (2, 3), (2,), (2,)],
                                   first_scale=0.1)
  np.testing.assert_allclose(spec.scales, [0.1, 0.2, 0.375, 0.55, 0.725, 0.9], atol=1e-9)
  assert spec.num_priors == 8732
  got = priors.generate(spec)
  np.testing.assert_allclose(got, _caffe(spec), atol=1e-6)
  # The paper's centres ((i + 0.5) / |f_k|): the first conv4_3 cell sits at 0.5 / 38.
  np.testing.assert_allclose(got[0, :2], [0.5 / 38] * 2, rtol=1e-6)


def test_from_linear_scales_without_extra_ratios_gives_two_squares_per_cell():
  spec = priors.from_linear_scales((4, 2), 0.2, 0.9, aspect_ratios=())
  assert spec.aspect_ratios == ((), ()) and spec.boxes_per_cell == (2, 2)
  got = priors.generate(spec)
  assert got.shape == ((16 + 4) * 2, 4)
  np.testing.assert_allclose(got[:, 2], got[:, 3])  # squares only


def test_clip_keeps_priors_inside_image():
  spec = dataclasses.replace(priors.SSD300_VOC, clip=True)
  extent = lambda p: np.concatenate([p[:, :2] - p[:, 2:] / 2, p[:, :2] + p[:, 2:] / 2], 1)
  clipped = extent(priors.generate(spec))
  assert clipped.min() >= -1e-6 and clipped.max() <= 1 + 1e-6
  unclipped = extent(priors.generate(priors.SSD300_VOC))  # Caffe's clip=False
  assert unclipped.min() < 0 and unclipped.max() > 1


@pytest.mark.parametrize("field,value", [
    ("min_sizes", (30, 60, 0, 162, 213, 264)),
    ("min_sizes", (30, 60, -1, 162, 213, 264)),
    ("max_sizes", (60, 111, float("inf"), 213, 264, 315)),
    ("steps", (8, 16, 32)),
    ("aspect_ratios", ((2,), (2, 3), (2, -3), (2, 3), (2,), (2,))),
    ("aspect_ratios", ((2,), (2, 3), (1,), (2, 3), (2,), (2,))),
    ("feature_map_sizes", (38, 19, 10, 5, 3, 0)),
    ("layer_names", ("a", "b")),
])
def test_invalid_specs_name_the_field(field, value):
  with pytest.raises(ValueError, match=field):
    dataclasses.replace(priors.SSD300_VOC, **{field: value})


def test_from_linear_scales_rejects_bad_scales():
  with pytest.raises(ValueError, match="s_min"):
    priors.from_linear_scales((8, 4), s_min=0.0)
  with pytest.raises(ValueError, match="s_min"):
    priors.from_linear_scales((8, 4), s_min=0.9, s_max=0.2)


def test_importing_priors_brings_kmeans_and_nothing_heavy():
  # A fresh interpreter: ``priors.kmeans`` must work without importing the submodule by name,
  # and the package must stay NumPy-only (no jax, no analysis, which imports priors).
  code = ("import sys; from ssd_jax import priors; priors.kmeans.fit_anchors; "
          "print(sorted(m for m in ('jax', 'tensorflow', 'ssd_jax.analysis') if m in sys.modules))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       timeout=60)
  assert out.stdout.strip() == "[]", out.stderr
