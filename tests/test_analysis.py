"""Tests of ssd_jax.analysis against loop-based NumPy references and hand-computed cases."""

import dataclasses
import math

import numpy as np
import pytest

from ssd_jax import analysis
from ssd_jax import boxes as box_lib
from ssd_jax import metrics
from ssd_jax import priors as prior_lib


# ------------------------------------------------------------------------------------------------
# Loop-based references.
# ------------------------------------------------------------------------------------------------


def ref_iou(a, b):
  """IoU of two xyxy boxes, float64."""
  iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
  ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
  inter = iw * ih
  union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
  return inter / union if union > 0 else 0.0


def ref_coverage(gt_xyxy, priors_cxcywh, layer_sizes):
  """Per box: best IoU, first best prior, and the full IoU row (double loop)."""
  priors_xyxy = [(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
                 for cx, cy, w, h in np.asarray(priors_cxcywh, np.float64)]
  best, arg, rows = [], [], []
  for g in np.asarray(gt_xyxy, np.float64):
    row = []
    b, j = -1.0, -1
    for p_index, p in enumerate(priors_xyxy):
      v = ref_iou(g, p)
      row.append(v)
      if v > b:
        b, j = v, p_index
    best.append(b)
    arg.append(j)
    rows.append(row)
  layer_of = []
  for k, size in enumerate(layer_sizes):
    layer_of += [k] * size
  return np.array(best), np.array(arg), np.array(rows), np.array(layer_of)


def random_boxes(rng, n):
  c = rng.uniform(0.1, 0.9, (n, 2))
  wh = np.exp(rng.uniform(np.log(0.03), np.log(0.8), (n, 2)))
  return np.clip(np.concatenate([c - wh / 2, c + wh / 2], 1), 0, 1).astype(np.float32)


TINY_SPEC = prior_lib.from_linear_scales((4, 2, 1), s_min=0.2, s_max=0.8, image_size=100,
                                         layer_names=("a", "b", "c"))


# ------------------------------------------------------------------------------------------------
# Ground-truth container and collection.
# ------------------------------------------------------------------------------------------------


def test_ground_truth_rejects_bad_boxes():
  for bad in ([[0.1, 0.1, np.nan, 0.5]], [[0.5, 0.1, 0.2, 0.6]], [[0.1, 0.1, 0.1, 0.5]],
              [[10, 20, 200, 300]], np.zeros((3, 3))):
    with pytest.raises(ValueError):
      analysis.GroundTruthBoxes.from_boxes(bad, (10, 10))
  with pytest.raises(ValueError, match="image_hw"):
    analysis.GroundTruthBoxes.from_boxes([[0.1, 0.1, 0.5, 0.5]], (0, 10))


def test_ground_truth_select_and_pixel_area():
  gt = analysis.GroundTruthBoxes.from_boxes(
      [[0.1, 0.2, 0.3, 0.6], [0.0, 0.0, 1.0, 1.0]], [[100, 200], [50, 40]], labels=[3, 1])
  # (0.2 * 200) * (0.4 * 100) = 1600 and 40 * 50 = 2000 pixels.
  np.testing.assert_allclose(gt.area_pixels, [1600, 2000], rtol=1e-6)
  sub = gt.select(np.array([False, True]))
  assert len(sub) == 1 and sub.labels.tolist() == [1]
  np.testing.assert_allclose(sub.image_hw, [[50, 40]])
  with pytest.raises(ValueError, match="mask"):
    gt.select(np.array([True]))


class _FakeDataset:

  def __init__(self, examples):
    self._examples = examples

  def as_numpy_iterator(self):
    return iter(self._examples)


class _FakeSource:
  """Stands in for an ssd_jax.data source: as_dataset(shuffle=False) -> dataset."""
  class_names = ("cat", "dog")

  def __init__(self, examples):
    self._examples = examples

  def as_dataset(self, shuffle=True):
    assert not shuffle
    return _FakeDataset(self._examples)


def _examples():
  return [
      {"image": np.zeros((20, 30, 3), np.uint8),
       "boxes": np.array([[0.1, 0.1, 0.5, 0.5], [0, 0, 0, 0], [0.2, 0.3, 0.2, 0.9]], np.float32),
       "labels": np.array([2, 0, 1], np.int32),  # a padding row and a zero-width box
       "difficult": np.array([True, False, False]), "crowd": np.array([False, False, False]),
       "image_id": 7},
      {"image": np.zeros((40, 10, 3), np.uint8),
       "boxes": np.array([[0.0, 0.0, 1.0, 0.5]], np.float32), "labels": np.array([1])},
      {"image": np.zeros((5, 5, 3), np.uint8),
       "boxes": np.array([[0.0, 0.0, 1.0, 1.0]], np.float32), "labels": np.array([2])},
  ]


def test_collect_boxes_from_source():
  with pytest.warns(UserWarning, match="dropped 1 boxes"):
    gt = analysis.collect_boxes(_FakeSource(_examples()), max_images=2)
  np.testing.assert_allclose(gt.boxes, [[0.1, 0.1, 0.5, 0.5], [0.0, 0.0, 1.0, 0.5]])
  assert gt.labels.tolist() == [2, 1]
  assert gt.image_index.tolist() == [0, 1]
  np.testing.assert_allclose(gt.image_hw, [[20, 30], [40, 10]])
  assert gt.difficult.tolist() == [True, False] and gt.crowd.tolist() == [False, False]
  assert gt.class_names == ("cat", "dog")
  # A plain iterable works too, and reads every image without max_images.
  with pytest.warns(UserWarning):
    assert len(analysis.collect_boxes(_examples())) == 3


def test_collect_boxes_errors():
  with pytest.raises(ValueError, match="no examples"):
    analysis.collect_boxes([])
  with pytest.raises(ValueError, match="lacks"):
    analysis.collect_boxes([{"boxes": np.zeros((1, 4)), "labels": np.ones(1)}])
  bad = _examples()[1] | {"boxes": np.array([[0.0, np.nan, 1.0, 0.5]], np.float32)}
  with pytest.raises(ValueError, match="non-finite"):
    analysis.collect_boxes([bad])
  with pytest.raises(ValueError, match="labels"):
    analysis.collect_boxes([_examples()[1] | {"labels": np.array([1, 2])}])


# ------------------------------------------------------------------------------------------------
# Buckets and coverage.
# ------------------------------------------------------------------------------------------------


def test_size_and_aspect_buckets_by_hand():
  # metrics' buckets (tests/test_metrics.py); sizes in pixels of the image scaled to 640 px.
  gt = analysis.GroundTruthBoxes.from_boxes(
      [[0.0, 0.0, 0.04, 0.04], [0.0, 0.0, 0.1, 0.1], [0.0, 0.0, 0.2, 0.2], [0.0, 0.0, 0.4, 0.1],
       [0.0, 0.0, 0.1, 0.1]],
      [[300, 300], [400, 500], [128, 128], [1000, 100], [500, 250]])
  cov = analysis.prior_coverage(gt, TINY_SPEC)
  # 655, 3277, 16384, 1638 and 2048 pixels at 640 px; the third is 26 x 26 pixels in its
  # 128-px image, but 128 x 128 in a COCO-sized one.
  assert cov.size_bucket.tolist() == [0, 1, 2, 1, 1]
  # The fourth is 40 x 100 pixels but w/h = 4 as the network sees it; the fifth 25 x 50 but 1.
  assert cov.aspect_bucket.tolist() == [2, 2, 2, 4, 2]


def test_boxes_land_in_the_same_buckets_as_in_the_metrics():
  """A box's size and shape buckets in the coverage tables are those of the evaluation's
  ``ap_<size>`` and ``recall_ar_<shape>``: found alone by a perfect detection, its own bucket
  has recall / AP 1 and the others none."""
  rng = np.random.default_rng(5)
  image_hw = rng.choice([[375, 500], [500, 333], [128, 128], [300, 1000], [640, 480]], 40)
  gt_boxes = random_boxes(rng, 40)
  cov = analysis.prior_coverage(analysis.GroundTruthBoxes.from_boxes(gt_boxes, image_hw),
                                TINY_SPEC)
  assert len(set(cov.size_bucket.tolist())) == 3 and len(set(cov.aspect_bucket.tolist())) >= 4
  for box, hw, size, shape in zip(gt_boxes, image_hw, cov.size_bucket, cov.aspect_bucket):
    pixels = metrics.to_pixels(box[None], *hw)
    gt = [{"boxes": pixels, "labels": [1]}]
    det = [{"boxes": pixels, "scores": [0.9], "labels": [1]}]
    recall = metrics.recall_by_aspect_ratio(gt, det, image_sizes=[hw])
    ap = metrics.evaluate_detections(gt, det, "voc", image_sizes=[hw])
    assert [name for name in metrics.ASPECT_NAMES if recall[f"recall_ar_{name}"] == 1.0] == [
        metrics.ASPECT_NAMES[shape]]
    assert [name for name in metrics.SIZE_NAMES if ap[f"ap_{name}"] == 1.0] == [
        metrics.SIZE_NAMES[size]]


def test_coverage_hand_case():
  # Dyadic coordinates keep every IoU exact in float32.
  priors = np.array([[0.25, 0.25, 0.25, 0.25], [0.75, 0.75, 0.5, 0.5],
                     [0.5, 0.5, 0.125, 0.375]], np.float32)
  gt = np.stack([
      np.asarray(box_lib.cxcywh_to_xyxy(priors[1])),  # exactly prior 1
      [0.875, 0.0, 0.9375, 0.0625],  # overlaps no prior
      [0.1875, 0.125, 0.4375, 0.375],  # prior 0 shifted right by 1/4 of its width: IoU 0.6
      [0.125, 0.125, 0.375, 0.25],  # upper half of prior 0: IoU exactly 0.5
  ]).astype(np.float32)
  cov = analysis.prior_coverage(gt, priors, 0.5, image_hw=(100, 100))
  np.testing.assert_allclose(cov.best_iou, [1.0, 0.0, 0.6, 0.5], atol=1e-6)
  assert cov.best_prior.tolist() == [1, 0, 0, 0]  # no overlap: the first prior on the tie
  assert cov.num_positive.tolist() == [1, 0, 1, 1]  # IoU == threshold counts
  assert cov.recall == pytest.approx(3 / 4)
  assert cov.layer_names == ("priors",) and cov.best_layer.tolist() == [0, 0, 0, 0]
  cov = analysis.prior_coverage(gt, priors, 0.7, image_hw=(100, 100))
  assert cov.num_positive.tolist() == [1, 0, 0, 0] and cov.recall == pytest.approx(1 / 4)


@pytest.mark.parametrize("chunk_size", [7, 1000])
def test_coverage_matches_loop_reference(chunk_size):
  rng = np.random.default_rng(0)
  gt_boxes = random_boxes(rng, 40)
  image_hw = rng.uniform(50, 600, (40, 2))
  gt = analysis.GroundTruthBoxes.from_boxes(gt_boxes, image_hw)
  priors = prior_lib.generate(TINY_SPEC)
  threshold = 0.45
  cov = analysis.prior_coverage(gt, TINY_SPEC, threshold, chunk_size=chunk_size)
  best, arg, rows, layer_of = ref_coverage(gt_boxes, priors, TINY_SPEC.boxes_per_layer)

  np.testing.assert_allclose(cov.best_iou, best, atol=1e-5)
  second = np.sort(rows, 1)[:, -2]
  clear = best - second > 1e-5  # argmax is only comparable where the winner is unambiguous
  assert clear.sum() > 30
  np.testing.assert_array_equal(cov.best_prior[clear], arg[clear])
  np.testing.assert_array_equal(cov.best_layer, layer_of[cov.best_prior])
  for k in range(TINY_SPEC.num_layers):
    in_layer = rows[:, layer_of == k]
    # Float32 vs float64: counts may differ only for IoUs within 1e-5 of the threshold.
    assert np.all(cov.positives_per_layer[:, k] <= (in_layer >= threshold - 1e-5).sum(1))
    assert np.all(cov.positives_per_layer[:, k] >= (in_layer >= threshold + 1e-5).sum(1))
  assert cov.recall == pytest.approx(np.mean(best >= threshold))
  assert 0 < cov.recall < 1

  # Areas of the image scaled to a 640-px longer side.
  areas = [(b[2] - b[0]) * (b[3] - b[1]) * 640 ** 2 * min(hw) / max(hw)
           for b, hw in zip(gt_boxes, image_hw)]
  expected_size = [0 if a < 32 ** 2 else 1 if a < 96 ** 2 else 2 for a in areas]
  np.testing.assert_array_equal(cov.size_bucket, expected_size)


def test_coverage_table_groups():
  rng = np.random.default_rng(1)
  gt = analysis.GroundTruthBoxes.from_boxes(random_boxes(rng, 60), (300, 300),
                                            labels=rng.integers(1, 3, 60))
  gt = dataclasses.replace(gt, class_names=("cat", "dog"))
  cov = analysis.prior_coverage(gt, TINY_SPEC)
  covered = cov.best_iou >= 0.5
  for by, bucket, names in (("size", cov.size_bucket, metrics.SIZE_NAMES),
                            ("aspect", cov.aspect_bucket, metrics.ASPECT_NAMES),
                            ("layer", cov.best_layer, ("a", "b", "c")),
                            ("class", cov.labels - 1, ("cat", "dog"))):
    rows = analysis.coverage_table(cov, by)
    assert [r["group"] for r in rows] == list(names) + ["all"]
    for i, row in enumerate(rows[:-1]):
      mask = bucket == i
      assert row["boxes"] == mask.sum()
      if mask.any():
        assert row["recall"] == pytest.approx(covered[mask].mean())
        assert row["mean_positives"] == pytest.approx(cov.num_positive[mask].mean())
        assert row["median_best_iou"] == pytest.approx(np.median(cov.best_iou[mask]))
      else:
        assert math.isnan(row["recall"])
    assert rows[-1]["boxes"] == 60 and rows[-1]["recall"] == pytest.approx(cov.recall)
    assert sum(r["share"] for r in rows[:-1]) == pytest.approx(1.0)
  rows = analysis.coverage_table(cov, "layer")
  from_layer = [r["positives_from_layer"] for r in rows]
  assert from_layer[-1] == pytest.approx(sum(from_layer[:-1]))
  assert from_layer[-1] == pytest.approx(cov.num_positive.mean())
  table = analysis.format_markdown(rows)
  assert table.splitlines()[0].startswith("| group | boxes |")
  assert len(table.splitlines()) == 2 + len(rows)
  with pytest.raises(ValueError, match="by must be"):
    analysis.coverage_table(cov, "colour")


def test_coverage_invalid_inputs():
  box = np.array([[0.1, 0.1, 0.4, 0.4]], np.float32)
  with pytest.raises(ValueError, match="iou_threshold"):
    analysis.prior_coverage(box, TINY_SPEC, 0.0)
  with pytest.raises(ValueError, match="image_hw"):
    analysis.prior_coverage(box, prior_lib.generate(TINY_SPEC))
  with pytest.raises(ValueError, match="no ground-truth"):
    analysis.prior_coverage(np.zeros((0, 4), np.float32), TINY_SPEC)
  with pytest.raises(ValueError, match="priors"):
    analysis.prior_coverage(box, np.zeros((5, 3)), image_hw=(10, 10))
  with pytest.raises(ValueError, match="not finite"):
    analysis.prior_coverage(np.array([[0.1, np.nan, 0.4, 0.4]]), TINY_SPEC)

