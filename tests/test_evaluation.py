"""Tests of ssd_jax.evaluation beyond the metrics (those are in test_metrics.py)."""

import types

import jax
import numpy as np
import pytest

from ssd_jax import evaluation
from ssd_jax import priors as priors_lib
from tests import reference_ssd


def _evaluator(priors, threshold, num_examples=1):
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
  # Only the size of the source matters where predictions are patched (or not run).
  source = types.SimpleNamespace(num_examples=num_examples)
  return evaluation.Evaluator(predict_fn=None, source=source, class_names=("a",), image_size=64,
                              batch_size=1, max_boxes=4, metrics=("voc07",), mesh=mesh,
                              priors=priors, match_threshold=threshold)


def _reference(boxes, priors, threshold):
  """Loops: each box's best IoU over all priors."""
  best = [max(reference_ssd.iou_one(b, reference_ssd.prior_to_xyxy(p)) for p in priors)
          for image in boxes for b in image]
  return np.mean(np.asarray(best) >= threshold), np.mean(best)


def test_prior_coverage_by_hand():
  # One prior covering the left half; a box equal to it (IoU 1), one a quarter of it (1/4), one
  # outside it (0).
  priors = np.array([[0.25, 0.5, 0.5, 1.0]], np.float32)
  boxes = [np.array([[0.0, 0.0, 0.5, 1.0], [0.0, 0.0, 0.25, 0.5]]), np.array([[0.6, 0, 1, 1]])]
  got = _evaluator(priors, 0.5).prior_coverage(boxes)
  assert got["prior_recall"] == pytest.approx(1 / 3)
  assert got["prior_mean_best_iou"] == pytest.approx((1 + 0.25 + 0) / 3)
  assert _evaluator(priors, 0.2).prior_coverage(boxes)["prior_recall"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("threshold", [0.3, 0.5])
def test_prior_coverage_matches_loop_reference(threshold):
  rng = np.random.default_rng(0)
  spec = priors_lib.PriorSpec(image_size=64, feature_map_sizes=(4, 2), steps=(16, 32),
                              min_sizes=(12.0, 32.0), max_sizes=(24.0, 56.0),
                              aspect_ratios=((2.0,), (2.0,)))
  priors = priors_lib.generate(spec)
  boxes = []
  for n in (3, 0, 5):  # an image without boxes counts for nothing
    xy = rng.uniform(0, 0.7, (n, 2))
    boxes.append(np.concatenate([xy, xy + rng.uniform(0.05, 0.3, (n, 2))], 1))
  got = _evaluator(priors, threshold).prior_coverage(boxes)
  recall, mean_iou = _reference(boxes, priors, threshold)
  assert 0 < recall < 1  # the check can fail either way
  assert got["prior_recall"] == pytest.approx(recall)
  assert got["prior_mean_best_iou"] == pytest.approx(mean_iou, abs=1e-6)


def test_prior_coverage_without_boxes_is_nan():
  got = _evaluator(np.array([[0.5, 0.5, 1, 1]], np.float32), 0.5).prior_coverage([np.zeros((0, 4))])
  assert np.isnan(got["prior_recall"]) and np.isnan(got["prior_mean_best_iou"])


def test_run_buckets_objects_as_the_metrics_and_analysis_do(monkeypatch):
  """``recall_ar_*`` and ``<metric>_ap_<size>`` of :meth:`Evaluator.run` bucket a box by its shape
  as the network sees it (normalized) and by its area in the image scaled to COCO's 640 px."""
  box = np.array([[0.1, 0.1, 0.14, 0.18]])  # 40 x 40 px in a 500 x 1000 (h x w) image
  gt = {"boxes": box, "labels": np.array([1])}
  det = {"boxes": box, "scores": np.array([0.9]), "labels": np.array([1])}
  monkeypatch.setattr(evaluation.Evaluator, "predictions",
                      lambda self, params: iter([(None, np.array([500, 1000]), gt, det)]))
  got = _evaluator(None, 0.5).run(params=None, step=3)
  assert got["num_images"] == 1 and got["num_images_unreadable"] == 0
  # w / h = 0.04 / 0.08 normalized (1 in pixels); 1600 px, 655 at 640 px (medium unscaled).
  assert got["recall_ar_1to2"] == 1.0 and np.isnan(got["recall_ar_1to1"])
  assert got["voc07_ap_small"] == pytest.approx(1.0) and np.isnan(got["voc07_ap_medium"])


def test_run_stops_when_more_than_a_few_images_could_not_be_read(monkeypatch):
  """Reading skips unreadable images (naming them); metrics on a shrunken set are refused."""
  gt = {"boxes": np.array([[0.1, 0.1, 0.5, 0.5]]), "labels": np.array([1])}
  det = {"boxes": gt["boxes"], "scores": np.array([0.9]), "labels": np.array([1])}
  monkeypatch.setattr(evaluation.Evaluator, "predictions", lambda self, params: iter(
      [(None, np.array([100, 100]), gt, det)] * 49))
  assert _evaluator(None, 0.5, num_examples=50).run(None, 1)["num_images_unreadable"] == 1
  with pytest.raises(ValueError, match=r"evaluation: 2 of 51 images cannot be found or read"):
    _evaluator(None, 0.5, num_examples=51).run(None, 1)
