"""Tests for ssd_jax.postprocess against loop-based NumPy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssd_jax import postprocess


# ----------------------------------------------------------------------------- NumPy references


def ref_iou(a, b):
  """IoU of two xyxy boxes; 0 when the union is empty."""
  iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
  ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
  inter = iw * ih
  area_a = max(a[2] - a[0], 0.0) * max(a[3] - a[1], 0.0)
  area_b = max(b[2] - b[0], 0.0) * max(b[3] - b[1], 0.0)
  union = area_a + area_b - inter
  return inter / union if union > 0 else 0.0


def ref_nms(boxes, scores, classes, iou_threshold, max_outputs, valid=None):
  """Greedy per-class NMS; suppresses IoU > threshold; ties by lower index. Padded with -1."""
  n = len(scores)
  valid = np.ones(n, bool) if valid is None else valid
  candidates = [i for i in range(n) if valid[i] and scores[i] > -np.inf]
  order = sorted(candidates, key=lambda i: (-scores[i], i))
  kept = []
  for i in order:
    if not any(classes[j] == classes[i] and ref_iou(boxes[j], boxes[i]) > iou_threshold
               for j in kept):
      kept.append(i)
  kept = kept[:max_outputs]
  return np.array(kept + [-1] * (max_outputs - len(kept)), np.int32)


def ref_decode(offset, prior, variances):
  cx = prior[0] + offset[0] * variances[0] * prior[2]
  cy = prior[1] + offset[1] * variances[0] * prior[3]
  w = prior[2] * np.exp(offset[2] * variances[1])
  h = prior[3] * np.exp(offset[3] * variances[1])
  return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def ref_detect_one(loc, logits, priors, score_threshold, iou_threshold, top_k, max_det,
                   variances=(0.1, 0.2)):
  """The Caffe DetectionOutput pipeline for one image, with Python loops."""
  num_priors, num_classes = logits.shape[0], logits.shape[1] - 1
  logits = logits.astype(np.float64)
  probs = np.exp(logits - logits.max(axis=1, keepdims=True))
  probs /= probs.sum(axis=1, keepdims=True)
  decoded = [ref_decode(loc[p], priors[p], variances) for p in range(num_priors)]
  detections = []  # (score, class, prior)
  for c in range(1, num_classes + 1):
    above = [p for p in range(num_priors) if probs[p, c] > score_threshold]
    above = sorted(above, key=lambda p: (-probs[p, c], p))[:top_k]
    kept = []
    for p in above:
      if all(ref_iou(decoded[q], decoded[p]) <= iou_threshold for q in kept):
        kept.append(p)
    detections += [(probs[p, c], c, p) for p in kept]
  detections = sorted(detections, key=lambda d: (-d[0], d[1], d[2]))[:max_det]
  boxes = np.zeros((max_det, 4))
  scores = np.zeros(max_det)
  classes = np.zeros(max_det, np.int32)
  for row, (score, c, p) in enumerate(detections):
    boxes[row] = np.clip(decoded[p], 0.0, 1.0)
    scores[row] = score
    classes[row] = c
  return boxes, scores, classes, len(detections)


def random_boxes(rng, n, min_size=0.05, max_size=0.5):
  xy = rng.uniform(0.0, 1.0 - min_size, (n, 2))
  wh = rng.uniform(min_size, max_size, (n, 2))
  return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


def random_priors(rng, n):
  return np.concatenate([rng.uniform(0.1, 0.9, (n, 2)), rng.uniform(0.05, 0.6, (n, 2))],
                        axis=1).astype(np.float32)


# ----------------------------------------------------------------------------- NMS core
# The greedy recurrence (postprocess._greedy_keep, vmapped over classes by decode_detections) fed
# candidates ranked here in NumPy, checked against ref_nms; the ranking, ties and per-class
# suppression as decode_detections does them are checked in the next section.


def rank_candidates(boxes, scores, classes, iou_threshold, valid=None):
  """``(order, suppress, valid)`` in rank order: _greedy_keep's inputs for these candidates.

  Ranked by decreasing score, ties by lower index, invalid (masked, ``-inf`` or NaN) last;
  ``suppress[j, i]``: same class and IoU ``> iou_threshold`` (``ref_iou``).
  """
  n = len(scores)
  valid = np.ones(n, bool) if valid is None else np.asarray(valid, bool)
  valid = valid & (scores > -np.inf)
  order = np.argsort(-np.where(valid, scores, -np.inf), kind="stable")
  suppress = np.array([[classes[j] == classes[i] and ref_iou(boxes[j], boxes[i]) > iou_threshold
                        for i in order] for j in order], bool).reshape(n, n)
  return order, suppress, valid[order]


def kept_indices(order, keep, max_outputs):
  """The first ``max_outputs`` kept candidates' indices, in rank order, padded with -1."""
  kept = order[np.asarray(keep)][:max_outputs]
  return np.concatenate([kept, np.full(max_outputs - len(kept), -1)]).astype(np.int32)


def greedy_nms(boxes, scores, classes, iou_threshold, max_outputs, valid=None):
  """ref_nms's interface over postprocess._greedy_keep."""
  boxes, scores = np.asarray(boxes, np.float32), np.asarray(scores, np.float32)
  order, suppress, valid = rank_candidates(boxes, scores, classes, iou_threshold, valid)
  keep = postprocess._greedy_keep(jnp.asarray(suppress), jnp.asarray(valid))
  assert keep.dtype == jnp.bool_ and keep.shape == valid.shape
  return kept_indices(order, keep, max_outputs)


def test_nms_hand_case():
  boxes = np.array([
      [0.0, 0.0, 1.0, 1.0],
      [0.0, 0.0, 1.0, 0.5],   # IoU 0.5 with box 0.
      [0.0, 0.0, 1.0, 0.4],   # IoU 0.4 with box 0, 0.8 with box 1.
      [2.0, 2.0, 3.0, 3.0],   # Disjoint.
  ], np.float32)
  scores = np.array([0.9, 0.8, 0.7, 0.1], np.float32)
  classes = np.zeros(4, np.int32)
  # At 0.45: 0 kills 1; 2 survives 0 (0.4) and 1 is gone; 3 disjoint.
  np.testing.assert_array_equal(greedy_nms(boxes, scores, classes, 0.45, 5), [0, 2, 3, -1, -1])
  # At 0.3: 0 kills 1 and 2.
  np.testing.assert_array_equal(greedy_nms(boxes, scores, classes, 0.3, 5), [0, 3, -1, -1, -1])
  # Another class for box 1: box 0 no longer suppresses it, nor does it suppress box 2 (IoU 0.8).
  classes = np.array([0, 1, 0, 0], np.int32)
  np.testing.assert_array_equal(greedy_nms(boxes, scores, classes, 0.45, 5), [0, 1, 2, 3, -1])


def test_nms_iou_equal_to_threshold_is_not_suppressed():
  boxes = np.array([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.5]], np.float32)  # IoU exactly 0.5.
  scores = np.array([0.9, 0.8], np.float32)
  classes = np.zeros(2, np.int32)
  np.testing.assert_array_equal(greedy_nms(boxes, scores, classes, 0.5, 2), [0, 1])
  np.testing.assert_array_equal(greedy_nms(boxes, scores, classes, 0.49, 2), [0, -1])


def test_nms_ties_rank_lower_index_first():
  # Disjoint boxes, tied scores: output in index order within a score level.
  boxes = np.array([[i, 0.0, i + 0.5, 0.5] for i in range(5)], np.float32)
  scores = np.array([1.0, 2.0, 1.0, 2.0, 1.0], np.float32)
  out = greedy_nms(boxes, scores, np.zeros(5, np.int32), 0.5, 5)
  np.testing.assert_array_equal(out, [1, 3, 0, 2, 4])
  # Identical boxes with tied scores: the lowest index is the one kept.
  same = np.tile(np.array([[0.1, 0.1, 0.6, 0.6]], np.float32), (4, 1))
  out = greedy_nms(same, np.full(4, 0.5, np.float32), np.zeros(4, np.int32), 0.5, 4)
  np.testing.assert_array_equal(out, [0, -1, -1, -1])


def test_greedy_keep_reads_only_the_strict_upper_triangle():
  # Only "j suppresses i" for j >= i is set: nothing ranked higher suppresses anything.
  suppress = np.tril(np.ones((5, 5), bool))
  keep = postprocess._greedy_keep(jnp.asarray(suppress), jnp.ones(5, bool))
  np.testing.assert_array_equal(keep, np.ones(5, bool))


def test_nms_all_invalid_gives_all_minus_one():
  rng = np.random.default_rng(0)
  boxes = random_boxes(rng, 6)
  classes = np.zeros(6, np.int32)
  out = greedy_nms(boxes, np.full(6, -np.inf, np.float32), classes, 0.5, 4)
  np.testing.assert_array_equal(out, [-1] * 4)
  out = greedy_nms(boxes, np.ones(6, np.float32), classes, 0.5, 4, valid=np.zeros(6, bool))
  np.testing.assert_array_equal(out, [-1] * 4)
  out = greedy_nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int32), 0.5, 3)
  np.testing.assert_array_equal(out, [-1] * 3)


def test_nms_invalid_candidates_suppress_nothing():
  boxes = np.array([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.9], [0.0, 0.0, 1.0, 0.8]], np.float32)
  scores = np.array([0.9, np.nan, 0.7], np.float32)
  classes = np.zeros(3, np.int32)
  np.testing.assert_array_equal(
      greedy_nms(boxes, scores, classes, 0.5, 3, valid=np.array([False, True, True])),
      [2, -1, -1])  # 0 masked out, 1 is NaN: 2 is kept.
  # Ranked first but invalid, candidate 0 would suppress the others if it counted.
  keep = postprocess._greedy_keep(jnp.ones((3, 3), bool), jnp.array([False, True, True]))
  np.testing.assert_array_equal(keep, [False, True, False])


def test_nms_all_suppressed_but_one():
  rng = np.random.default_rng(1)
  base = np.array([0.2, 0.2, 0.7, 0.7], np.float32)
  boxes = base + rng.uniform(-0.01, 0.01, (10, 4)).astype(np.float32)
  scores = rng.uniform(0, 1, 10).astype(np.float32)
  out = greedy_nms(boxes, scores, np.full(10, 3, np.int32), 0.5, 10)
  np.testing.assert_array_equal(out, [np.argmax(scores)] + [-1] * 9)


def test_nms_more_survivors_than_max_outputs():
  rng = np.random.default_rng(2)
  boxes = np.array([[i, 0.0, i + 0.5, 0.5] for i in range(12)], np.float32)
  scores = rng.permutation(12).astype(np.float32)
  out = greedy_nms(boxes, scores, np.zeros(12, np.int32), 0.5, 5)
  np.testing.assert_array_equal(out, np.argsort(-scores)[:5])


@pytest.mark.parametrize("seed", range(25))
def test_nms_random_vs_reference(seed):
  rng = np.random.default_rng(seed)
  # Few distinct shapes (each compiles once); the number of live candidates varies via masks.
  n = int(rng.choice([7, 32]))
  boxes = random_boxes(rng, n)
  # Coarse scores so that ties are common; some -inf, some masked out.
  scores = rng.integers(0, 6, n).astype(np.float32)
  scores[rng.uniform(size=n) < rng.uniform(0.0, 0.5)] = -np.inf
  classes = rng.integers(0, 3, n).astype(np.int32)
  valid = rng.uniform(size=n) > rng.uniform(0.0, 0.5)
  iou_threshold = float(rng.choice([0.0, 0.2, 0.45, 0.7]))
  max_outputs = int(rng.choice([4, 40]))
  out = greedy_nms(boxes, scores, classes, iou_threshold, max_outputs, valid=valid)
  assert out.dtype == np.int32 and out.shape == (max_outputs,)
  np.testing.assert_array_equal(
      out, ref_nms(boxes, scores, classes, iou_threshold, max_outputs, valid))


def test_nms_under_jit_and_vmap():
  rng = np.random.default_rng(3)
  boxes = random_boxes(rng, 30).reshape(3, 10, 4)
  scores = rng.uniform(size=(3, 10)).astype(np.float32)
  classes = rng.integers(0, 2, (3, 10)).astype(np.int32)
  ranked = [rank_candidates(boxes[i], scores[i], classes[i], 0.3) for i in range(3)]
  order, suppress, valid = (np.stack(parts) for parts in zip(*ranked))
  keep = jax.jit(jax.vmap(postprocess._greedy_keep))(suppress, valid)
  for i in range(3):
    np.testing.assert_array_equal(kept_indices(order[i], keep[i], 6),
                                  ref_nms(boxes[i], scores[i], classes[i], 0.3, 6))


# ----------------------------------------------------------------------------- NMS in detection
# Zero offsets decode to the priors exactly, so priors given as xyxy boxes are the NMS candidates.


def decode_boxes(boxes_xyxy, class_logits, **kwargs):
  """decode_detections on one image whose priors decode to ``boxes_xyxy`` ``[P, 4]`` (in
  ``[0, 1]``), with ``class_logits`` ``[P, C]`` next to a background logit of 0."""
  boxes_xyxy = np.asarray(boxes_xyxy, np.float32)
  priors = np.concatenate([(boxes_xyxy[:, :2] + boxes_xyxy[:, 2:]) / 2,
                           boxes_xyxy[:, 2:] - boxes_xyxy[:, :2]], axis=1)
  logits = np.concatenate([np.zeros((len(priors), 1)), class_logits], axis=1)
  out = postprocess.decode_detections(np.zeros((1, len(priors), 4), np.float32),
                                      logits[None].astype(np.float32), priors, **kwargs)
  n = int(out["num_detections"][0])
  return np.asarray(out["boxes"][0, :n]), np.asarray(out["classes"][0, :n])


def test_detect_nms_hand_case_and_per_class():
  # test_nms_hand_case's boxes, scaled into the unit square; class-1 scores in the same order.
  boxes = np.array([[0, 0, 1, 1], [0, 0, 1, 0.5], [0, 0, 1, 0.4], [2, 2, 3, 3]], np.float32) / 3
  logits = np.array([[4.0], [3.0], [2.0], [1.0]])
  for threshold, kept in ((0.45, [0, 2, 3]), (0.3, [0, 3])):
    got, _ = decode_boxes(boxes, logits, iou_threshold=threshold)
    np.testing.assert_allclose(got, boxes[kept], atol=1e-6)
  # Box 1 in class 2 only: box 0 no longer suppresses it, nor does it suppress box 2 (IoU 0.8).
  logits = np.array([[4.0, -30.0], [-30.0, 3.0], [2.0, -30.0], [1.0, -30.0]])
  got, classes = decode_boxes(boxes, logits, iou_threshold=0.45)
  np.testing.assert_allclose(got, boxes[[0, 1, 2, 3]], atol=1e-6)
  np.testing.assert_array_equal(classes, [1, 2, 1, 1])


def test_detect_nms_iou_equal_to_threshold_is_not_suppressed():
  boxes = np.array([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.5]], np.float32)  # IoU exactly 0.5.
  logits = np.array([[2.0], [1.0]])
  np.testing.assert_allclose(decode_boxes(boxes, logits, iou_threshold=0.5)[0], boxes)
  np.testing.assert_allclose(decode_boxes(boxes, logits, iou_threshold=0.49)[0], boxes[:1])


def test_detect_nms_ties_rank_lower_prior_first():
  # Disjoint boxes, tied scores: output in prior order within a score level.
  boxes = np.array([[i / 5, 0.0, i / 5 + 0.1, 0.1] for i in range(5)], np.float32)
  got, _ = decode_boxes(boxes, np.array([[1.0], [2.0], [1.0], [2.0], [1.0]]))
  np.testing.assert_allclose(got, boxes[[1, 3, 0, 2, 4]], atol=1e-6)


# ----------------------------------------------------------------------------- detect


def assert_matches_reference(out, loc, logits, priors, **kwargs):
  for b in range(loc.shape[0]):
    boxes, scores, classes, num = ref_detect_one(
        loc[b], logits[b], priors, kwargs["score_threshold"], kwargs["iou_threshold"],
        kwargs["pre_nms_top_k"], kwargs["max_detections"])
    assert int(out["num_detections"][b]) == num
    np.testing.assert_array_equal(out["classes"][b], classes)
    np.testing.assert_allclose(out["scores"][b], scores, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(out["boxes"][b], boxes, atol=1e-5)


@pytest.mark.parametrize("seed,num_priors,num_classes,top_k,max_det,score_threshold", [
    (0, 50, 3, 20, 30, 0.01),
    (1, 50, 3, 400, 200, 0.01),   # top_k > P (clamped), K > C * P.
    (2, 50, 3, 20, 30, 0.2),      # Same shapes as the first case: no recompile.
    (3, 60, 5, 15, 8, 0.0),       # Final top-K cuts survivors.
])
def test_detect_vs_reference(seed, num_priors, num_classes, top_k, max_det, score_threshold):
  rng = np.random.default_rng(seed)
  batch = 2
  priors = random_priors(rng, num_priors)
  loc = rng.normal(0.0, 1.0, (batch, num_priors, 4)).astype(np.float32)
  logits = rng.normal(0.0, 2.0, (batch, num_priors, num_classes + 1)).astype(np.float32)
  kwargs = dict(score_threshold=score_threshold, iou_threshold=0.45, pre_nms_top_k=top_k,
                max_detections=max_det)
  out = postprocess.decode_detections(loc, logits, priors, **kwargs)
  assert_matches_reference(out, loc, logits, priors, **kwargs)
  # The cases must exercise NMS and produce detections, or the comparison above proves little.
  assert int(out["num_detections"].min()) > 0
  num_kept = ref_detect_one(loc[0], logits[0], priors, score_threshold, 0.45, top_k, 10**6)[3]
  num_unsuppressed = ref_detect_one(loc[0], logits[0], priors, score_threshold, 1.0, top_k,
                                    10**6)[3]
  assert num_kept < num_unsuppressed


@pytest.mark.parametrize("iou_threshold", [0.0, 0.2, 0.45, 0.7])
def test_detect_with_ties_vs_reference(iou_threshold):
  # Priors and logit rows drawn from a few prototypes: tied scores and identical boxes are common
  # and bitwise equal, while distinct scores stay far apart (float32 here, float64 in the loops).
  rng = np.random.default_rng(7)
  num_priors, num_classes = 40, 3
  priors = random_priors(rng, 12)[rng.integers(0, 12, num_priors)]
  prototypes = rng.normal(0.0, 2.0, (4, num_classes + 1))
  logits = prototypes[rng.integers(0, 4, (2, num_priors))].astype(np.float32)
  loc = np.zeros((2, num_priors, 4), np.float32)
  kwargs = dict(score_threshold=0.01, iou_threshold=iou_threshold, pre_nms_top_k=30,
                max_detections=50)
  out = postprocess.decode_detections(loc, logits, priors, **kwargs)
  assert_matches_reference(out, loc, logits, priors, **kwargs)
  assert int(out["num_detections"].min()) > 0


def test_detect_hand_case():
  # Priors: 0 and 1 overlap heavily (IoU 0.9), 2 is elsewhere; zero offsets decode to the priors.
  priors = np.array([[0.5, 0.5, 0.4, 0.4], [0.5, 0.52, 0.4, 0.36], [0.1, 0.1, 0.1, 0.1]],
                    np.float32)
  loc = np.zeros((1, 3, 4), np.float32)
  big = 10.0
  logits = np.array([[[0.0, big, 0.0],         # Class 1, highest.
                      [0.0, big - 1, big - 1],  # Classes 1 and 2 tie.
                      [big, 0.0, 0.0]]],        # Background.
                    np.float32)
  out = postprocess.decode_detections(loc, logits, priors, score_threshold=0.01, iou_threshold=0.45,
                           pre_nms_top_k=10, max_detections=4)
  p0 = np.exp(big) / (np.exp(big) + 2)
  p1 = np.exp(big - 1) / (2 * np.exp(big - 1) + 1)
  # Prior 1 loses class 1 to prior 0 (same class, IoU 0.9) but keeps class 2.
  np.testing.assert_array_equal(out["classes"][0], [1, 2, 0, 0])
  np.testing.assert_allclose(out["scores"][0], [p0, p1, 0, 0], rtol=1e-5)
  np.testing.assert_allclose(out["boxes"][0], [[0.3, 0.3, 0.7, 0.7], [0.3, 0.34, 0.7, 0.7],
                                               [0, 0, 0, 0], [0, 0, 0, 0]], atol=1e-6)
  assert int(out["num_detections"][0]) == 2
  # Without suppression both class-1 and class-2 copies of prior 1 survive: the tie between them
  # ranks class 1 first.
  out = postprocess.decode_detections(loc, logits, priors, iou_threshold=1.0, max_detections=4)
  np.testing.assert_array_equal(out["classes"][0], [1, 1, 2, 0])


def test_detect_under_outer_jit_shapes_and_padding():
  rng = np.random.default_rng(5)
  batch, num_priors, num_classes, max_det = 3, 40, 4, 25
  priors = random_priors(rng, num_priors)
  loc = rng.normal(0.0, 1.0, (batch, num_priors, 4)).astype(np.float32)
  logits = rng.normal(0.0, 2.0, (batch, num_priors, num_classes + 1)).astype(np.float32)
  logits[1, :, 0] = 100.0  # Image 1: background everywhere, nothing detected.

  @jax.jit
  def forward_and_detect(weights, features):
    # Stand-in for a model forward pass in the same jit.
    return postprocess.decode_detections(features * weights, logits, priors, pre_nms_top_k=10,
                              max_detections=max_det)

  out = forward_and_detect(jnp.float32(1.0), loc)
  assert out["boxes"].shape == (batch, max_det, 4) and out["boxes"].dtype == jnp.float32
  assert out["scores"].shape == (batch, max_det) and out["scores"].dtype == jnp.float32
  assert out["classes"].shape == (batch, max_det) and out["classes"].dtype == jnp.int32
  assert out["num_detections"].shape == (batch,) and out["num_detections"].dtype == jnp.int32
  assert int(out["num_detections"][1]) == 0
  for b in range(batch):
    n = int(out["num_detections"][b])
    scores = np.asarray(out["scores"][b])
    assert np.all(scores[:n] > 0.01) and np.all(np.diff(scores[:n]) <= 0)
    assert np.all((out["classes"][b, :n] >= 1) & (out["classes"][b, :n] <= num_classes))
    assert np.all(scores[n:] == 0) and np.all(np.asarray(out["classes"][b, n:]) == 0)
    assert np.all(np.asarray(out["boxes"][b, n:]) == 0)
    boxes = np.asarray(out["boxes"][b, :n])
    assert np.all((boxes >= 0) & (boxes <= 1))
  assert_matches_reference(out, loc, logits, priors, score_threshold=0.01, iou_threshold=0.45,
                           pre_nms_top_k=10, max_detections=max_det)


def test_detect_extreme_inputs_are_finite():
  rng = np.random.default_rng(6)
  num_priors, num_classes = 30, 3
  priors = random_priors(rng, num_priors)
  loc = rng.choice([-1e30, -1e4, 0.0, 1e4, 1e30], (2, num_priors, 4)).astype(np.float32)
  logits = rng.choice([-1e30, -1e4, 0.0, 1e4, 1e30], (2, num_priors, num_classes + 1))
  out = postprocess.decode_detections(loc, logits.astype(np.float32), priors)
  for key, value in out.items():
    assert np.all(np.isfinite(np.asarray(value, np.float64))), key
  assert np.all((np.asarray(out["boxes"]) >= 0) & (np.asarray(out["boxes"]) <= 1))
  assert int(out["num_detections"].min()) > 0


def test_detect_bad_input_raises():
  loc, logits, priors = np.zeros((2, 5, 4)), np.zeros((2, 5, 3)), np.zeros((5, 4))
  with pytest.raises(ValueError, match="loc"):
    postprocess.decode_detections(np.zeros((5, 4)), logits, priors)
  with pytest.raises(ValueError, match="logits"):
    postprocess.decode_detections(loc, np.zeros((2, 6, 3)), priors)
  with pytest.raises(ValueError, match="logits"):
    postprocess.decode_detections(loc, np.zeros((2, 5, 1)), priors)
  with pytest.raises(ValueError, match="priors"):
    postprocess.decode_detections(loc, logits, np.zeros((4, 4)))
  with pytest.raises(ValueError, match="pre_nms_top_k"):
    postprocess.decode_detections(loc, logits, priors, pre_nms_top_k=0)
  with pytest.raises(ValueError, match="max_detections"):
    postprocess.decode_detections(loc, logits, priors, max_detections=-1)
  with pytest.raises(ValueError, match="iou_threshold"):
    postprocess.decode_detections(loc, logits, priors, iou_threshold=-0.1)
  with pytest.raises(ValueError, match="variances"):
    postprocess.decode_detections(loc, logits, priors, variances=(0.1,))
