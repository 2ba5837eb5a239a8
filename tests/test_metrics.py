"""ssd_jax.metrics: hand-computed VOC cases, the loop reference, and pycocotools run directly."""

import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ssd_jax import metrics
from tests import reference_voc_eval as ref


def _boxes(boxes):
  boxes = np.asarray(boxes, np.float64)
  return boxes.reshape(0, 4) if boxes.size == 0 else boxes


def _gt(boxes, labels, difficult=None, crowd=None):
  out = {'boxes': _boxes(boxes), 'labels': np.asarray(labels, int)}
  if difficult is not None:
    out['difficult'] = np.asarray(difficult, bool)
  if crowd is not None:
    out['crowd'] = np.asarray(crowd, bool)
  return out


def _det(boxes, scores, labels):
  return {'boxes': _boxes(boxes), 'scores': np.asarray(scores, np.float64),
          'labels': np.asarray(labels, int)}


def _voc(gts, dets, **kwargs):
  return (metrics.evaluate_detections(gts, dets, 'voc07', **kwargs),
          metrics.evaluate_detections(gts, dets, 'voc', **kwargs))


def _random_case(rng, num_images=12, num_classes=4, score_levels=None, crowd=False):
  """Pixel boxes of many sizes; detections jitter gt (TPs, duplicates, misses) or are noise."""
  gts, dets = [], []
  for _ in range(num_images):
    n = int(rng.integers(0, 7))
    wh = np.exp(rng.uniform(np.log(6), np.log(250), size=(n, 2)))
    xy = rng.uniform(0, 400, size=(n, 2))
    boxes = np.round(np.concatenate([xy, xy + wh], 1))  # Integer pixels, like VOC annotations.
    labels = rng.integers(1, num_classes + 1, n)
    gts.append(_gt(boxes, labels, difficult=rng.random(n) < 0.2,
                   crowd=(rng.random(n) < 0.15) if crowd else None))
    copies = rng.integers(0, 3, n)
    src = np.repeat(np.arange(n), copies)
    jitter = rng.normal(0, 0.12, (len(src), 4)) * np.tile(wh[src], 2)
    d_boxes = boxes[src] + jitter
    d_labels = np.where(rng.random(len(src)) < 0.85, labels[src], rng.integers(1, num_classes + 1,
                                                                               len(src)))
    m = int(rng.integers(0, 4))
    noise_xy = rng.uniform(0, 400, (m, 2))
    noise = np.concatenate([noise_xy, noise_xy + rng.uniform(5, 150, (m, 2))], 1)
    d_boxes = np.concatenate([d_boxes, noise])
    d_boxes[:, 2:] = np.maximum(d_boxes[:, 2:], d_boxes[:, :2])
    d_labels = np.concatenate([d_labels, rng.integers(1, num_classes + 1, m)])
    scores = rng.random(len(d_boxes))
    if score_levels:
      scores = np.floor(scores * score_levels) / score_levels  # Many ties.
    dets.append(_det(d_boxes, scores, d_labels))
  return gts, dets


# ------------------------------------------------------------------------------------------------
# VOC: hand-computed cases.
# ------------------------------------------------------------------------------------------------


def test_voc_hand_computed_tp_fp_sequence():
  # 3 gt (two images); +1 widths make [0, 0, 9, 9] a 10x10 box.
  gts = [_gt([[0, 0, 9, 9], [20, 20, 29, 29]], [1, 1]), _gt([[0, 0, 9, 9]], [1])]
  dets = [_det([[0, 0, 9, 9], [0, 0, 9, 9]], [0.9, 0.8], [1, 1]),  # TP, then duplicate -> FP
          _det([[0, 0, 9, 9], [50, 50, 60, 60]], [0.7, 0.6], [1, 1])]  # TP, then miss -> FP
  voc07, voc = _voc(gts, dets)
  # Ranked TP, FP, TP, FP: recall 1/3, 1/3, 2/3, 2/3; precision 1, 1/2, 2/3, 1/2.
  # 11-point: t = 0, .1, .2, .3 -> max precision 1; t = .4, .5, .6 -> 2/3; t >= .7 -> 0.
  assert voc07['map'] == pytest.approx((4 * 1 + 3 * (2 / 3)) / 11, abs=1e-12)
  # All-point: envelope 1 on recall (0, 1/3], 2/3 on (1/3, 2/3], nothing beyond.
  assert voc['map'] == pytest.approx(1 / 3 * 1 + 1 / 3 * (2 / 3), abs=1e-12)
  assert voc07['per_class_ap'] == {'1': voc07['map']}


def test_voc_plus_one_pixel_convention_and_strict_threshold():
  gts = [_gt([[0, 0, 9, 9]], [1])]
  # Inclusive pixels: intersection 5.5 * 10 = 55 over union 100 -> 0.55, a TP. With continuous
  # widths the same boxes give 4.5 * 9 / 81 = 0.5 exactly, which would not pass `> 0.5`.
  for metric in ('voc07', 'voc'):
    hit = metrics.evaluate_detections(gts, [_det([[0, 0, 4.5, 9]], [1.], [1])], metric)
    assert hit['map'] == pytest.approx(1.0, abs=1e-12)  # 11 * (1 / 11) need not be exactly 1.
    # Intersection 5 * 10 = 50 over union 100: IoU exactly 0.5 is not `> 0.5`: a FP.
    miss = metrics.evaluate_detections(gts, [_det([[0, 0, 4, 9]], [1.], [1])], metric)
    assert miss['map'] == 0.0


def test_voc_difficult_is_neither_tp_nor_fp_nor_positive():
  # g0 = [0,0,9,9] normal, g1 = [2,0,11,9] difficult. The top detection is exactly g1, also
  # overlapping g0 with IoU 80/120 > 0.5: it goes to its best gt g1 and is ignored; then one on g0.
  # Ignored, the ranking is a single TP at recall 1: AP 1. Had the first been a FP (or taken g0) the
  # 11-point AP would be 6/11; had g1 counted as a positive, recall would stop at 1/2.
  gts = [_gt([[0, 0, 9, 9], [2, 0, 11, 9]], [1, 1], difficult=[False, True])]
  dets = [_det([[2, 0, 11, 9], [0, 0, 9, 9]], [0.9, 0.8], [1, 1])]
  assert ref.voc_eval_class(gts, dets, 1, True) == pytest.approx(1.0, abs=1e-12)
  for result in _voc(gts, dets):
    assert result['map'] == pytest.approx(1.0, abs=1e-12)
  # A class whose only objects are difficult has no AP and stays out of the mean.
  gts = [_gt([[0, 0, 9, 9], [30, 30, 39, 39]], [1, 2], difficult=[False, True])]
  dets = [_det([[0, 0, 9, 9], [30, 30, 39, 39]], [0.9, 0.8], [1, 2])]
  for result in _voc(gts, dets, class_names=['cat', 'dog']):
    assert result['map'] == pytest.approx(1.0, abs=1e-12)
    assert result['per_class_ap']['cat'] == pytest.approx(1.0, abs=1e-12)
    assert np.isnan(result['per_class_ap']['dog'])


def test_voc_best_overlap_already_detected_is_fp_without_fallback():
  # A = [0,0,9,9], B = [2,0,11,9] (IoU 80/120). Both detections are exactly A: the second goes to
  # its best gt A, already taken, so it is a FP although its IoU with the free B is 2/3.
  gts = [_gt([[0, 0, 9, 9], [2, 0, 11, 9]], [1, 1])]
  dets = [_det([[0, 0, 9, 9], [0, 0, 9, 9]], [0.9, 0.8], [1, 1])]
  voc07, voc = _voc(gts, dets)
  # Recall 1/2, 1/2; precision 1, 1/2: 11-point t = 0..0.5 -> 1 (6 points); all-point 1/2 * 1.
  assert voc07['map'] == pytest.approx(6 / 11, abs=1e-12)
  assert voc['map'] == pytest.approx(0.5, abs=1e-12)


def test_voc07_keeps_the_devkit_recall_points():
  # 10 objects, 3 found with precision 1: recall 3/10 stays below the devkit's 0.1 * 3 =
  # 0.30000000000000004, so only t = 0, .1, .2 count: 3/11, not 4/11.
  boxes = [[20 * i, 0, 20 * i + 9, 9] for i in range(10)]
  gts = [_gt(boxes, [1] * 10)]
  dets = [_det(boxes[:3], [0.9, 0.8, 0.7], [1] * 3)]
  result = metrics.evaluate_detections(gts, dets, 'voc07')
  assert result['map'] == pytest.approx(3 / 11, abs=1e-15)
  assert ref.voc_eval_class(gts, dets, 1, True) == pytest.approx(3 / 11, abs=1e-15)


# ------------------------------------------------------------------------------------------------
# VOC: against the loop reference.
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize('seed,score_levels', [(0, None), (1, None), (2, 5), (3, 3)])
def test_voc_matches_loop_reference_on_random_cases(seed, score_levels):
  rng = np.random.default_rng(seed)
  num_classes = 4
  gts, dets = _random_case(rng, num_classes=num_classes, score_levels=score_levels)
  for metric, use_07 in (('voc07', True), ('voc', False)):
    got = metrics.evaluate_detections(gts, dets, metric, num_classes=num_classes)
    want = [ref.voc_eval_class(gts, dets, c, use_07) for c in range(1, num_classes + 1)]
    np.testing.assert_allclose(list(got['per_class_ap'].values()), want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got['map'], np.nanmean(want), rtol=0, atol=1e-12)
    assert 0 < got['map'] < 1  # A non-trivial case.


# ------------------------------------------------------------------------------------------------
# VOC by object size and shape.
# ------------------------------------------------------------------------------------------------


def test_voc_ap_by_size_hand_computed():
  # A 320-px image: areas scale by (640 / 320)^2 = 4 on the COCO yardstick. A (10 x 10: 400,
  # small) and B (20 x 20: 1600, medium) of one class; noise N (10 x 10, small) ranks first.
  gts = [_gt([[0, 0, 10, 10], [100, 100, 120, 120]], [1, 1])]
  dets = [_det([[200, 200, 210, 210], [0, 0, 10, 10], [100, 100, 120, 120]], [0.95, 0.9, 0.7],
               [1, 1, 1])]
  result = metrics.evaluate_detections(gts, dets, 'voc', image_sizes=[(320, 320)])
  # All: FP, TP, TP -> precision 0, 1/2, 2/3 at recall 0, 1/2, 1: envelope 2/3 throughout.
  assert result['map'] == pytest.approx(2 / 3, abs=1e-12)
  # Small: N (FP), A (TP); the detection of B goes to an ignored object. Recall 1 at precision 1/2.
  assert result['ap_small'] == pytest.approx(0.5, abs=1e-12)
  # Medium: only B counts; N is a false positive outside the range, A's detection hit ignored A.
  assert result['ap_medium'] == pytest.approx(1.0, abs=1e-12)
  assert np.isnan(result['ap_large'])  # no large object
  # In the image's own pixels both objects are small (100 and 400 px^2 < 32^2).
  plain = metrics.evaluate_detections(gts, dets, 'voc')
  assert plain['ap_small'] == pytest.approx(2 / 3, abs=1e-12) and np.isnan(plain['ap_medium'])


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_voc_ap_by_size_matches_loop_reference(seed):
  rng = np.random.default_rng(20 + seed)
  gts, dets = _random_case(rng, num_images=14, num_classes=3, score_levels=4)
  sizes = rng.uniform(150, 700, (len(gts), 2))
  scales = (640 / sizes.max(1))**2
  for metric, use_07 in (('voc07', True), ('voc', False)):
    got = metrics.evaluate_detections(gts, dets, metric, num_classes=3, image_sizes=sizes)
    for size, area_range in metrics.SIZE_RANGES.items():
      want = [ref.voc_eval_class(gts, dets, c, use_07, area_range=area_range, scales=scales)
              for c in (1, 2, 3)]
      np.testing.assert_allclose(got[f'ap_{size}'], np.nanmean(want), rtol=0, atol=1e-12)
  assert len({got['ap_small'], got['ap_medium'], got['ap_large'], got['map']}) == 4


def _separated_case(rng, num_images=12, num_classes=3):
  """Objects in separate cells of a grid, detections that are clearly hits (IoU > 0.8) or misses
  (IoU 0), and areas away from the size boundaries: the devkit's and COCO's matching agree."""
  gts, dets, sizes = [], [], []
  for _ in range(num_images):
    h, w = rng.uniform(400, 640, 2)
    sides = [s for s in rng.uniform(16, 200, 12) if not (26 < s < 40 or 80 < s < 115)][:6]
    cells = rng.permutation(9)[:len(sides) + 2]
    scale = max(h, w) / 640  # sides are on the 640-px yardstick
    corner = lambda k: np.array([k % 3, k // 3]) * np.array([w, h]) / 3
    boxes = np.array([[*corner(k), *(corner(k) + s * scale)] for k, s in zip(cells, sides)])
    labels = rng.integers(1, num_classes + 1, len(sides))
    d_boxes, d_scores, d_labels = [], [], []
    for box, label in zip(boxes, labels):
      for _ in range(int(rng.integers(0, 3))):  # missed, found, or found twice
        d_boxes.append(box + rng.uniform(-0.03, 0.03, 4) * (box[2] - box[0]))
        d_labels.append(label if rng.random() < 0.8 else rng.integers(1, num_classes + 1))
    for k, s in zip(cells[len(sides):], rng.uniform(16, 200, 2)):  # noise in empty cells
      if not (26 < s < 40 or 80 < s < 115):
        d_boxes.append(np.array([*corner(k), *(corner(k) + s * scale)]))
        d_labels.append(rng.integers(1, num_classes + 1))
    d_scores = rng.random(len(d_boxes))
    gts.append(_gt(boxes, labels))
    dets.append(_det(np.reshape(d_boxes, (-1, 4)), d_scores, d_labels))
    sizes.append((h, w))
  return gts, dets, np.array(sizes)


def _pycocotools_area_ap(gts, dets, sizes, num_classes):
  """Per area range, the mean over classes of the all-point AP at IoU 0.5 computed from
  pycocotools' own per-image matches (``evalImgs``) on the boxes scaled to a 640-px longer side."""
  scaled_gts = [{**gt, 'boxes': gt['boxes'] * 640 / max(size)} for gt, size in zip(gts, sizes)]
  scaled_dets = [{**det, 'boxes': det['boxes'] * 640 / max(size)}
                 for det, size in zip(dets, sizes)]
  coco_eval = _direct_cocoeval(scaled_gts, scaled_dets, num_classes, iou_thresholds=[0.5])
  ranges = [list(r) for r in coco_eval.params.areaRng]
  out = {}
  for name in ('small', 'medium', 'large'):
    a = coco_eval.params.areaRngLbl.index(name)
    aps = []
    for c in range(1, num_classes + 1):
      images = [e for e in coco_eval.evalImgs
                if e is not None and e['category_id'] == c and e['aRng'] == ranges[a]]
      npos = sum(int((e['gtIgnore'] == 0).sum()) for e in images)
      if npos == 0:
        continue
      scores = np.concatenate([e['dtScores'] for e in images])
      matched = np.concatenate([e['dtMatches'][0] for e in images]) > 0
      ignored = np.concatenate([e['dtIgnore'][0] for e in images]).astype(bool)
      order = np.argsort(-scores, kind='mergesort')
      matched, ignored = matched[order], ignored[order]
      tp = np.cumsum(matched[~ignored])
      fp = np.cumsum(~matched[~ignored])
      aps.append(ref.voc_ap(tp / npos, tp / np.maximum(tp + fp, 1), False))
    out[name] = float(np.mean(aps)) if aps else float('nan')
  return out


@pytest.mark.parametrize('seed', [0, 1])
def test_voc_ap_by_size_matches_pycocotools_area_ranges(seed):
  gts, dets, sizes = _separated_case(np.random.default_rng(30 + seed))
  got = metrics.evaluate_detections(gts, dets, 'voc', num_classes=3, image_sizes=sizes)
  want = _pycocotools_area_ap(gts, dets, sizes, 3)
  for name in ('small', 'medium', 'large'):
    assert got[f'ap_{name}'] == pytest.approx(want[name], abs=1e-12), name
    assert 0 < got[f'ap_{name}'] < 1


def test_size_and_aspect_buckets_by_hand():
  areas = [0, 1023.9, 1024, 9215.9, 9216, 1e6]
  assert metrics.size_buckets(areas).tolist() == [0, 0, 1, 1, 2, 2]
  assert [metrics.SIZE_RANGES[n] for n in metrics.SIZE_NAMES] == [
      (0, 32**2), (32**2, 96**2), (96**2, 1e10)]
  # Each of the paper's ratios in its own bucket; an edge goes to the bucket above it.
  assert metrics.aspect_buckets([1 / 3, 1 / 2, 1, 2, 3]).tolist() == [0, 1, 2, 3, 4]
  assert metrics.aspect_buckets(metrics.ASPECT_EDGES).tolist() == [1, 2, 3, 4]
  ratios = [0.3, 0.4, 0.41, 0.7, 0.71, 1.41, 1.42, 2.44, 2.45, np.inf]
  assert metrics.aspect_buckets(ratios).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
  assert list(metrics.ASPECT_BUCKETS) == list(metrics.ASPECT_NAMES)
  assert metrics.ASPECT_BUCKETS['1to2'] == (np.sqrt(1 / 6), np.sqrt(1 / 2))
  np.testing.assert_allclose(metrics.coco_area_scale([[375, 500], [128, 128], [1000, 100]]),
                             [1.6384, 25, 0.4096])


@pytest.mark.parametrize('a, b', [(1 / 3, 1 / 2), (1 / 2, 1), (1, 2), (2, 3)])
def test_aspect_edges_are_where_the_best_prior_shape_changes(a, b):
  """A box whose ratio is on the edge between two of the paper's ratios overlaps a centred prior
  of the same area and either ratio equally (the IoU depends only on the ratios' quotient)."""
  def iou_with(ratio, prior_ratio):  # centred boxes of area 1: w = sqrt(r), h = 1 / sqrt(r)
    inter = min(np.sqrt(ratio), np.sqrt(prior_ratio)) * min(1 / np.sqrt(ratio),
                                                            1 / np.sqrt(prior_ratio))
    return inter / (2 - inter)
  edge = metrics.ASPECT_EDGES[[1 / 3, 1 / 2, 1, 2].index(a)]
  assert iou_with(edge, a) == pytest.approx(iou_with(edge, b), rel=1e-12)
  assert iou_with(edge * 0.99, a) > iou_with(edge * 0.99, b)
  assert iou_with(edge * 1.01, a) < iou_with(edge * 1.01, b)


def test_recall_by_aspect_ratio_hand_computed():
  tall, square, wide, difficult = [0, 0, 10, 40], [50, 0, 70, 20], [100, 0, 160, 20], [0, 50, 9, 59]
  gts = [_gt([tall, square, wide, difficult], [1, 1, 2, 1], difficult=[0, 0, 0, 1])]
  dets = [_det([tall, square, difficult], [0.9, 0.8, 0.7], [1, 1, 1])]  # wide missed
  got = metrics.recall_by_aspect_ratio(gts, dets)
  assert got['recall'] == pytest.approx(2 / 3)
  assert got['recall_ar_1to3'] == 1.0 and got['recall_ar_1to1'] == 1.0
  assert got['recall_ar_3to1'] == 0.0
  assert np.isnan(got['recall_ar_1to2']) and np.isnan(got['recall_ar_2to1'])
  # A detection of the wrong class finds nothing.
  assert metrics.recall_by_aspect_ratio(gts, [_det([wide], [0.9], [1])])['recall_ar_3to1'] == 0.0


def test_recall_by_aspect_ratio_measures_the_normalized_box_with_image_sizes():
  # 20 x 20 pixels in a 250 x 500 (h x w) image: w / h = 1 in pixels, 1/2 as the network sees it.
  gts, dets = [_gt([[10, 10, 30, 30]], [1])], [_det([[10, 10, 30, 30]], [0.9], [1])]
  pixel = metrics.recall_by_aspect_ratio(gts, dets)
  warped = metrics.recall_by_aspect_ratio(gts, dets, image_sizes=[[250, 500]])
  assert pixel['recall_ar_1to1'] == 1.0 and np.isnan(pixel['recall_ar_1to2'])
  assert warped['recall_ar_1to2'] == 1.0 and np.isnan(warped['recall_ar_1to1'])
  with pytest.raises(ValueError, match='image_sizes'):
    metrics.recall_by_aspect_ratio(gts, dets, image_sizes=[[250, 500], [1, 1]])


@pytest.mark.parametrize('seed', [0, 1])
def test_recall_by_aspect_ratio_matches_loop_reference(seed):
  gts, dets = _random_case(np.random.default_rng(40 + seed), num_images=20, num_classes=3)
  got = metrics.recall_by_aspect_ratio(gts, dets, num_classes=3)
  want = ref.recall_by_aspect(gts, dets, (1, 2, 3), list(metrics.ASPECT_BUCKETS.values()))
  np.testing.assert_allclose([got[f'recall_ar_{k}'] for k in metrics.ASPECT_BUCKETS], want,
                             rtol=0, atol=1e-12)
  assert sum(0 < r < 1 for r in want) >= 3  # the buckets are non-trivial


# ------------------------------------------------------------------------------------------------
# COCO: against pycocotools run directly.
# ------------------------------------------------------------------------------------------------


# pycocotools' summary order.
COCO_KEYS = ('map', 'ap50', 'ap75', 'ap_small', 'ap_medium', 'ap_large',
             'ar1', 'ar10', 'ar100', 'ar_small', 'ar_medium', 'ar_large')


def _direct_cocoeval(gts, dets, num_classes, iou_thresholds=None):
  """pycocotools on the same data, built separately (numpy-array results, offset ids); with
  ``iou_thresholds``, only its per-image matching at those thresholds (``evalImgs``)."""
  dataset = {'images': [{'id': 100 + i} for i in range(len(gts))],
             'categories': [{'id': c} for c in range(1, num_classes + 1)], 'annotations': []}
  for i, gt in enumerate(gts):
    for j in range(len(gt['labels'])):
      x0, y0, x1, y1 = gt['boxes'][j]
      dataset['annotations'].append({
          'id': 1000 + len(dataset['annotations']), 'image_id': 100 + i,
          'category_id': int(gt['labels'][j]), 'bbox': [x0, y0, x1 - x0, y1 - y0],
          'area': float(gt['area'][j]) if 'area' in gt else (x1 - x0) * (y1 - y0),
          'iscrowd': int(gt.get('crowd', np.zeros(len(gt['labels'])))[j])})
  rows = [[100 + i, *det['boxes'][j, :2], *(det['boxes'][j, 2:] - det['boxes'][j, :2]),
           det['scores'][j], det['labels'][j]]
          for i, det in enumerate(dets) for j in range(len(det['labels']))]
  with contextlib.redirect_stdout(io.StringIO()):
    coco_gt = COCO()
    coco_gt.dataset = dataset
    coco_gt.createIndex()
    coco_eval = COCOeval(coco_gt, coco_gt.loadRes(np.array(rows)), 'bbox')
    if iou_thresholds is not None:
      coco_eval.params.iouThrs = np.asarray(iou_thresholds)
      coco_eval.evaluate()
      return coco_eval
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
  return coco_eval


@pytest.mark.parametrize('seed', [0, 1])
def test_coco_matches_direct_pycocotools(seed):
  rng = np.random.default_rng(seed)
  gts, dets = _random_case(rng, num_images=10, num_classes=3, crowd=True)
  got = metrics.evaluate_detections(gts, dets, 'coco', class_names=['a', 'b', 'c'])
  coco_eval = _direct_cocoeval(gts, dets, 3)
  want = [np.nan if s == -1 else s for s in coco_eval.stats]
  np.testing.assert_allclose([got[k] for k in COCO_KEYS], want, rtol=0, atol=1e-9)
  assert 0 < got['map'] < 1
  # Per class: mean precision over IoU thresholds and recall points, area 'all', 100 detections.
  for k, name in enumerate('abc'):
    p = coco_eval.eval['precision'][:, :, k, 0, 2]
    assert got['per_class_ap'][name] == pytest.approx(p[p > -1].mean(), abs=1e-9)


def test_coco_size_ranges_follow_the_annotation_area():
  # A 100 x 100 box (10000 px: "large") whose annotation area is 500 px ("small"), found exactly.
  gts = [_gt([[0, 0, 100, 100]], [1])]
  dets = [_det([[0, 0, 100, 100]], [0.9], [1])]
  by_box = metrics.evaluate_detections(gts, dets, 'coco')
  assert by_box['ap_large'] == pytest.approx(1.0) and np.isnan(by_box['ap_small'])
  gts[0]['area'] = np.array([500.0])
  by_area = metrics.evaluate_detections(gts, dets, 'coco')
  assert by_area['ap_small'] == pytest.approx(1.0) and by_area['ar_small'] == pytest.approx(1.0)
  assert np.isnan(by_area['ap_medium']) and np.isnan(by_area['ap_large'])
  assert by_area['map'] == pytest.approx(1.0)
  want = [np.nan if v == -1 else v for v in _direct_cocoeval(gts, dets, 1).stats]
  np.testing.assert_allclose([by_area[k] for k in COCO_KEYS], want, rtol=0, atol=1e-12)


@pytest.mark.parametrize('seed', [0, 1])
def test_coco_with_annotation_areas_matches_direct_pycocotools(seed):
  rng = np.random.default_rng(10 + seed)
  gts, dets = _random_case(rng, num_images=10, num_classes=3, crowd=True)
  for gt in gts:  # Segmentation-like areas: a random fraction of the box, across size ranges.
    wh = gt['boxes'][:, 2:] - gt['boxes'][:, :2]
    gt['area'] = wh[:, 0] * wh[:, 1] * rng.uniform(0.05, 1.0, len(wh))
  got = metrics.evaluate_detections(gts, dets, 'coco', num_classes=3)
  want = [np.nan if v == -1 else v for v in _direct_cocoeval(gts, dets, 3).stats]
  np.testing.assert_allclose([got[k] for k in COCO_KEYS], want, rtol=0, atol=1e-9)
  without = metrics.evaluate_detections([{k: v for k, v in gt.items() if k != 'area'}
                                            for gt in gts], dets, 'coco', num_classes=3)
  assert got['ap_small'] != without['ap_small']  # The areas matter here.


def test_voc_crowd_is_ignored_like_difficult():
  gts, dets = _random_case(np.random.default_rng(6), num_classes=3, crowd=True)
  assert any(gt['crowd'].any() for gt in gts)
  as_difficult = [_gt(gt['boxes'], gt['labels'], difficult=gt['difficult'] | gt['crowd'])
                  for gt in gts]
  for metric, use_07 in (('voc07', True), ('voc', False)):
    got = metrics.evaluate_detections(gts, dets, metric, num_classes=3)
    assert got == metrics.evaluate_detections(as_difficult, dets, metric, num_classes=3)
    want = [ref.voc_eval_class(as_difficult, dets, c, use_07) for c in (1, 2, 3)]
    np.testing.assert_allclose(list(got['per_class_ap'].values()), want, rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------------------------
# All metrics: edge cases and output format.
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize('metric', metrics.METRICS)
def test_perfect_and_empty_detections(metric):
  gts, _ = _random_case(np.random.default_rng(5), num_classes=3)
  for gt in gts:
    gt['difficult'][:] = False
  perfect = [_det(gt['boxes'], np.linspace(1, 0.5, len(gt['labels'])), gt['labels']) for gt in gts]
  result = metrics.evaluate_detections(gts, perfect, metric, num_classes=3)
  assert result['map'] == pytest.approx(1.0, abs=1e-12)
  assert list(result['per_class_ap'].values()) == pytest.approx([1.0] * 3, abs=1e-12)
  empty = [{'boxes': np.zeros((0, 4)), 'scores': [], 'labels': []} for _ in gts]
  result = metrics.evaluate_detections(gts, empty, metric, num_classes=3)
  assert result['map'] == 0.0 and list(result['per_class_ap'].values()) == [0.0] * 3
  json.dumps(result)  # Plain Python floats.
  assert all(type(v) is float for v in result['per_class_ap'].values())


def test_class_without_ground_truth_is_nan_and_excluded():
  gts = [_gt([[0, 0, 9, 9]], [1]), _gt([], [])]
  dets = [_det([[0, 0, 9, 9]], [0.5], [1]), _det([[0, 0, 9, 9]], [0.5], [3])]
  for metric in metrics.METRICS:
    result = metrics.evaluate_detections(gts, dets, metric)  # C = 3 from the labels seen.
    assert result['map'] == pytest.approx(1.0)
    assert list(result['per_class_ap']) == ['1', '2', '3']
    assert np.isnan(result['per_class_ap']['2']) and np.isnan(result['per_class_ap']['3'])


def test_no_ground_truth_at_all_warns():
  with pytest.warns(UserWarning, match='no class has ground truth'):
    result = metrics.evaluate_detections([_gt([], [])], [_det([[0, 0, 1, 1]], [1.], [1])], 'voc')
  assert np.isnan(result['map'])


@pytest.mark.parametrize('gts,dets,kwargs,match', [
    ([_gt([], [])], [], {}, 'aligned'),
    ([{'labels': []}], [_det([], [], [])], {}, r"ground_truth\[0\] has no 'boxes'"),
    ([_gt([[0, 0, 1]], [1])], [_det([], [], [])], {}, r"ground_truth\[0\]\['boxes'\]: .*\[N, 4\]"),
    ([_gt([[0, 0, 1, np.nan]], [1])], [_det([], [], [])], {}, r"ground_truth\[0\]\['boxes'\].*NaN"),
    ([_gt([[2, 0, 1, 1]], [1])], [_det([], [], [])], {}, 'xmax >= xmin'),
    ([_gt([[0, 0, 1, 1]], [1, 1])], [_det([], [], [])], {}, r"\['labels'\]: expected shape \[1\]"),
    ([_gt([], [])], [_det([[0, 0, 1, 1]], [np.nan], [1])], {}, r"detections\[0\]\['scores'\].*NaN"),
    ([_gt([], [])], [_det([[0, 0, 1, 1]], [0.5], [0])], {},
     r"detections\[0\]\['labels'\].*label 0"),
    ([_gt([[0, 0, 1, 1]], [4])], [_det([], [], [])], {'num_classes': 3}, 'outside 1..3'),
    ([{'boxes': [[0, 0, 1, 1]], 'labels': [1], 'difficult': [2]}], [_det([], [], [])], {},
     r"ground_truth\[0\]\['difficult'\] must be booleans"),
    ([{'boxes': [[0, 0, 1, 1]], 'labels': [1], 'area': [-1.0]}], [_det([], [], [])], {},
     r"ground_truth\[0\]\['area'\] must be finite and >= 0"),
    ([{'boxes': [[0, 0, 1, 1]], 'labels': [1], 'area': [1.0, 2.0]}], [_det([], [], [])], {},
     r"ground_truth\[0\]\['area'\]: expected shape \[1\]"),
    ([_gt([], [])], [_det([], [], [])], {'num_classes': 2, 'class_names': ['a']}, 'class_names'),
    ([_gt([], [])], [_det([], [], [])], {'image_sizes': [(10, 10), (5, 5)]},
     r'image_sizes: expected \[1, 2\]'),
    ([_gt([], [])], [_det([], [], [])], {'image_sizes': [(10, 0)]}, 'finite and positive'),
])
def test_invalid_input_raises(gts, dets, kwargs, match):
  with pytest.raises(ValueError, match=match):
    metrics.evaluate_detections(gts, dets, 'voc07', **kwargs)


def test_unknown_metric_and_float_labels_raise():
  with pytest.raises(ValueError, match='Unknown metric'):
    metrics.evaluate_detections([], [], 'map50')
  bad = {'boxes': [[0, 0, 1, 1]], 'labels': [1.0]}
  with pytest.raises(ValueError, match=r"ground_truth\[0\]\['labels'\] must be integers"):
    metrics.evaluate_detections([bad], [_det([], [], [])], 'voc')


def test_to_pixels():
  boxes = np.array([[[0.1, 0.2, 0.5, 1.0]], [[0.0, 0.5, 1.0, 0.75]]])  # [B=2, N=1, 4]
  got = metrics.to_pixels(boxes, height=np.array([100, 40]), width=np.array([200, 10]))
  np.testing.assert_allclose(got, [[[20, 20, 100, 100]], [[0, 20, 10, 30]]])
  np.testing.assert_allclose(metrics.to_pixels(boxes[0, 0], 10, 20), [2, 2, 10, 10])
  with pytest.raises(ValueError, match='leading axes'):
    metrics.to_pixels(boxes, height=np.array([1, 2, 3]), width=np.array([1, 2, 3]))
  with pytest.raises(ValueError, match='positive'):
    metrics.to_pixels(boxes, 0, 10)
