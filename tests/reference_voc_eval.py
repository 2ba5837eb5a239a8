"""Plain loop re-implementation of py-faster-rcnn's ``voc_eval.py`` (the VOC devkit in Python).

Written independently of ``ssd_jax.metrics`` and kept close to the original: one class at a
time, all detections of the class ranked globally, a Python loop over them with per-gt "detected"
flags. Two deliberate choices of the MATLAB devkit where the Python port is ill-defined: a stable
sort for equal scores, and NaN precisions (0/0, before any TP/FP) skipped by the max.

With an area range, pycocotools' ``areaRng`` rules on top: objects outside the range count as
difficult, and a false positive outside it counts as nothing. Recall by aspect ratio is a separate
loop over the objects.
"""

import numpy as np


def voc_ap(rec, prec, use_07_metric):
  """The devkit's AP from recall/precision arrays (11-point or all-point)."""
  if use_07_metric:
    ap = 0.
    for t in np.arange(0., 1.1, 0.1):
      ps = [p for r, p in zip(rec, prec) if r >= t and not np.isnan(p)]
      ap = ap + (max(ps) if ps else 0.) / 11.
    return ap
  mrec = np.concatenate(([0.], rec, [1.]))
  mpre = np.concatenate(([0.], prec, [0.]))
  for i in range(mpre.size - 1, 0, -1):
    mpre[i - 1] = np.fmax(mpre[i - 1], mpre[i])
  ap = 0.
  for i in range(mrec.size - 1):
    if mrec[i + 1] != mrec[i]:
      ap += (mrec[i + 1] - mrec[i]) * mpre[i + 1]
  return ap


def _in_range(box, scale, area_range):
  if area_range is None:
    return True
  area = (box[2] - box[0]) * (box[3] - box[1]) * scale
  return area_range[0] <= area <= area_range[1]


def voc_eval_class(ground_truth, detections, classname, use_07_metric, ovthresh=0.5,
                   area_range=None, scales=None):
  """AP of one class; inputs as for ``evaluate_detections``. NaN when the class has no positives.

  ``area_range`` ``(lo, hi)``: only objects whose area times ``scales[image]`` is in it count.
  """
  scales = scales if scales is not None else [1.] * len(ground_truth)
  class_recs = []
  npos = 0
  for i, gt in enumerate(ground_truth):
    keep = [j for j in range(len(gt['labels'])) if gt['labels'][j] == classname]
    difficult = [bool(gt.get('difficult', [False] * len(gt['labels']))[j])
                 or not _in_range(gt['boxes'][j], scales[i], area_range) for j in keep]
    npos += sum(not d for d in difficult)
    class_recs.append({'bbox': [list(map(float, gt['boxes'][j])) for j in keep],
                       'difficult': difficult, 'det': [False] * len(keep)})

  image_ids, confidence, bbs = [], [], []
  for i, det in enumerate(detections):
    for j in range(len(det['labels'])):
      if det['labels'][j] == classname:
        image_ids.append(i)
        confidence.append(float(det['scores'][j]))
        bbs.append(list(map(float, det['boxes'][j])))
  order = np.argsort(-np.array(confidence), kind='stable')

  tp, fp = [], []
  for d in order:
    rec = class_recs[image_ids[d]]
    bb = bbs[d]
    ovmax, jmax = -np.inf, -1
    for j, g in enumerate(rec['bbox']):
      iw = max(min(g[2], bb[2]) - max(g[0], bb[0]) + 1., 0.)
      ih = max(min(g[3], bb[3]) - max(g[1], bb[1]) + 1., 0.)
      inters = iw * ih
      uni = ((bb[2] - bb[0] + 1.) * (bb[3] - bb[1] + 1.)
             + (g[2] - g[0] + 1.) * (g[3] - g[1] + 1.) - inters)
      if inters / uni > ovmax:  # First maximum wins, like np.argmax.
        ovmax, jmax = inters / uni, j
    t, f = 0., 0.
    if ovmax > ovthresh:
      if not rec['difficult'][jmax]:
        if not rec['det'][jmax]:
          t = 1.
          rec['det'][jmax] = True
        elif _in_range(bb, scales[image_ids[d]], area_range):
          f = 1.
    elif _in_range(bb, scales[image_ids[d]], area_range):
      f = 1.
    tp.append(t)
    fp.append(f)

  if npos == 0:
    return float('nan')
  tp, fp = np.cumsum(tp), np.cumsum(fp)
  rec = tp / float(npos)
  with np.errstate(invalid='ignore'):
    prec = tp / (tp + fp)
  return voc_ap(rec, prec, use_07_metric)


def recall_by_aspect(ground_truth, detections, classes, edges, ovthresh=0.5):
  """Per bucket ``[lo, hi)`` of ``edges`` (a list of pairs), the share of non-difficult objects
  that the devkit's matching gives a true positive; NaN for an empty bucket."""
  found = {}  # (image, object) -> matched
  for c in classes:
    for i, gt in enumerate(ground_truth):
      keep = [j for j in range(len(gt['labels'])) if gt['labels'][j] == c]
      taken = {j: False for j in keep}
      det = detections[i]
      order = sorted((d for d in range(len(det['labels'])) if det['labels'][d] == c),
                     key=lambda d: -det['scores'][d])  # sorted() is stable
      for d in order:
        bb = det['boxes'][d]
        ovmax, jmax = -np.inf, -1
        for j in keep:
          g = gt['boxes'][j]
          iw = max(min(g[2], bb[2]) - max(g[0], bb[0]) + 1., 0.)
          ih = max(min(g[3], bb[3]) - max(g[1], bb[1]) + 1., 0.)
          uni = ((bb[2] - bb[0] + 1.) * (bb[3] - bb[1] + 1.)
                 + (g[2] - g[0] + 1.) * (g[3] - g[1] + 1.) - iw * ih)
          if iw * ih / uni > ovmax:
            ovmax, jmax = iw * ih / uni, j
        if ovmax > ovthresh:
          taken[jmax] = True
      for j in keep:
        if not gt.get('difficult', [False] * len(gt['labels']))[j]:
          found[(i, j)] = taken[j]
  out = []
  for lo, hi in edges:
    hits = []
    for (i, j), hit in found.items():
      x0, y0, x1, y1 = ground_truth[i]['boxes'][j]
      if lo <= (x1 - x0) / (y1 - y0) < hi:
        hits.append(hit)
    out.append(float(np.mean(hits)) if hits else float('nan'))
  return out
