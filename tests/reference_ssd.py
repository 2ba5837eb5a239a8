"""Plain, loop-based NumPy references for the SSD geometry core.

Written independently of ``ssd_jax`` from the paper and the Caffe implementation (bbox_util.cpp,
prior_box_layer.cpp), one box / prior / ground truth at a time, so that the vectorized library
code is checked against something that shares none of its code. Slow by design.
"""

import math

import numpy as np


def iou_one(a, b) -> float:
  """IoU of two xyxy boxes; 0 when the union is empty; inverted boxes have area 0."""
  aw, ah = max(a[2] - a[0], 0.0), max(a[3] - a[1], 0.0)
  bw, bh = max(b[2] - b[0], 0.0), max(b[3] - b[1], 0.0)
  iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
  ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
  inter = iw * ih
  union = aw * ah + bw * bh - inter
  return inter / union if union > 0 else 0.0


def iou_matrix(a, b) -> np.ndarray:
  out = np.zeros((len(a), len(b)))
  for i in range(len(a)):
    for j in range(len(b)):
      out[i, j] = iou_one(a[i], b[j])
  return out


def prior_to_xyxy(p):
  cx, cy, w, h = p
  return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def encode_one(g, p, variances=(0.1, 0.2), eps=1e-6):
  """Caffe CENTER_SIZE encoding of xyxy box ``g`` against cxcywh prior ``p``."""
  gcx, gcy = (g[0] + g[2]) / 2, (g[1] + g[3]) / 2
  gw, gh = max(g[2] - g[0], eps), max(g[3] - g[1], eps)
  pcx, pcy, pw, ph = p
  return ((gcx - pcx) / pw / variances[0], (gcy - pcy) / ph / variances[0],
          math.log(gw / pw) / variances[1], math.log(gh / ph) / variances[1])


def decode_one(t, p, variances=(0.1, 0.2)):
  pcx, pcy, pw, ph = p
  cx = pcx + t[0] * variances[0] * pw
  cy = pcy + t[1] * variances[0] * ph
  w = pw * math.exp(t[2] * variances[1])
  h = ph * math.exp(t[3] * variances[1])
  return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def caffe_priors(image_size, feature_map_sizes, steps, min_sizes, max_sizes, aspect_ratios,
                 flip=True, offset=0.5):
  """PriorBoxLayer::Forward_cpu, one layer after the other; returns normalized cxcywh."""
  out = []
  for k, f in enumerate(feature_map_sizes):
    ratios = [1.0]
    for a in aspect_ratios[k]:
      ratios.append(a)
      if flip:
        ratios.append(1.0 / a)
    for h in range(f):
      for w in range(f):
        cx = (w + offset) * steps[k]
        cy = (h + offset) * steps[k]
        s = min_sizes[k]
        out.append((cx, cy, s, s))
        if max_sizes is not None and max_sizes[k] is not None:
          sp = math.sqrt(s * max_sizes[k])
          out.append((cx, cy, sp, sp))
        for r in ratios[1:]:
          out.append((cx, cy, s * math.sqrt(r), s / math.sqrt(r)))
  return np.asarray(out) / image_size


def match_reference(gt_boxes, gt_labels, priors, threshold, mode, crowd=None):
  """Both matching modes, written as the two published algorithms read.

  With ``crowd``: crowd objects are left out of both steps, then every prior still unmatched that
  overlaps a crowd object at IoU >= ``threshold`` gets -2 (ignored). Background is -1.
  """
  prior_boxes = [prior_to_xyxy(p) for p in priors]
  is_crowd = [crowd is not None and bool(crowd[j]) for j in range(len(gt_boxes))]
  real = [j for j in range(len(gt_boxes)) if gt_labels[j] > 0 and not is_crowd[j]]
  crowds = [j for j in range(len(gt_boxes)) if gt_labels[j] > 0 and is_crowd[j]]
  ov = {(j, i): iou_one(gt_boxes[j], prior_boxes[i]) for j in real for i in range(len(priors))}
  match = [-1] * len(priors)
  forced = set()
  if mode == "per_gt":
    for j in real:  # in order: a later ground truth overwrites an earlier one's prior
      best_i, best = 0, -1.0
      for i in range(len(priors)):
        if ov[j, i] > best:
          best_i, best = i, ov[j, i]
      if best > 0:
        match[best_i] = j
        forced.add(best_i)
  else:  # Caffe bipartite: global greedy
    gt_pool, taken = list(real), set()
    while gt_pool:
      best, best_pair = 0.0, None
      for j in gt_pool:
        for i in range(len(priors)):
          if i not in taken and ov[j, i] > best:
            best, best_pair = ov[j, i], (j, i)
      if best_pair is None:
        break
      j, i = best_pair
      match[i] = j
      forced.add(i)
      taken.add(i)
      gt_pool.remove(j)
  for i in range(len(priors)):
    if i in forced:
      continue
    best_j, best = -1, -1.0
    for j in real:
      if ov[j, i] > best:
        best_j, best = j, ov[j, i]
    if best_j >= 0 and best >= threshold:
      match[i] = best_j
  for i in range(len(priors)):
    if match[i] == -1:
      for j in crowds:
        if iou_one(gt_boxes[j], prior_boxes[i]) >= threshold:
          match[i] = -2
  return np.asarray(match)


def targets_reference(gt_labels, match):
  """Class targets from ``match_reference``'s indices: the label, 0 background, -1 ignored."""
  return np.asarray([gt_labels[j] if j >= 0 else (-1 if j == -2 else 0) for j in match])


def log_softmax_row(z):
  m = max(z)
  s = sum(math.exp(v - m) for v in z)
  return [v - m - math.log(s) for v in z]


def hard_negatives_reference(background_loss, positive, ratio, ignored=None):
  """Per image: sort negatives (neither positive nor ignored) by loss (descending, stable) and
  keep the first 3 * num_pos."""
  out = np.zeros_like(positive, dtype=bool)
  for b in range(positive.shape[0]):
    npos = int(positive[b].sum())
    negs = [i for i in range(positive.shape[1])
            if not positive[b, i] and not (ignored is not None and ignored[b, i])]
    negs.sort(key=lambda i: -background_loss[b, i])  # Python's sort is stable
    for i in negs[:min(int(math.floor(ratio * npos)), len(negs))]:
      out[b, i] = True
  return out


def multibox_loss_reference(loc_pred, logits, loc_targets, cls_targets, ratio=3.0, alpha=1.0):
  """Eq. 1 of the paper; class targets < 0 (ignored) are neither positives nor negatives."""
  bsz, p = cls_targets.shape
  logp = np.zeros(logits.shape)
  for b in range(bsz):
    for i in range(p):
      logp[b, i] = log_softmax_row(list(logits[b, i]))
  positive = cls_targets > 0
  negative = hard_negatives_reference(-logp[..., 0], positive, ratio, ignored=cls_targets < 0)
  conf, loc = 0.0, 0.0
  for b in range(bsz):
    for i in range(p):
      if positive[b, i] or negative[b, i]:
        conf -= logp[b, i, cls_targets[b, i]]
      if positive[b, i]:
        for c in range(4):
          d = abs(loc_pred[b, i, c] - loc_targets[b, i, c])
          loc += 0.5 * d * d if d < 1 else d - 0.5
  n = max(int(positive.sum()), 1)
  return (conf + alpha * loc) / n, conf / n, loc / n
