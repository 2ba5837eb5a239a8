"""VOC and COCO detection metrics, computed on host from gathered per-image detections.

Metrics (``evaluate_detections(..., metric=...)``):
  * ``'voc07'``: PASCAL VOC2007 11-point interpolated AP at IoU 0.5 (the SSD paper's VOC number).
  * ``'voc'``: VOC2010+ all-point AP (area under the monotone precision envelope), same matching.
  * ``'coco'``: AP@[.5:.95], AP50, AP75, AP/AR by object size, via ``pycocotools``.

The VOC metrics reproduce the devkit as ported to Python in py-faster-rcnn's ``voc_eval.py``:
  * Boxes are inclusive pixel indices: width = ``xmax - xmin + 1`` for areas and intersections.
  * Detections of a class are processed in decreasing score over the whole set; each goes to the
    ground truth (any difficulty) it overlaps most. IoU ``> 0.5`` (strictly) with a not yet detected
    gt is a true positive; with an already detected gt a false positive (no fall back to the second
    best gt); below the threshold a false positive. Detections whose best gt is *difficult* are
    neither; difficult objects are not counted in the number of positives. The devkit knows no
    crowd regions (VOC has none): a *crowd* gt is treated as difficult, i.e. ignored, as
    mmdetection's VOC-style ``eval_map`` treats ignored boxes.
  * 11-point AP averages the best precision at recall >= ``np.arange(0., 1.1, 0.1)``: that range's
    floating point values are kept on purpose (0.30000000000000004 etc.), so a recall of exactly
    3/10 does not reach the 0.3 point, as in the reference.
  * Sums are done in the same order, so values agree bit for bit (a perfect 11-point AP reads
    ``11 * (1 / 11) = 1.0000000000000002``).
  Where ``voc_eval.py`` is ill-defined we follow the MATLAB devkit: equal scores keep their input
  order (image order, then detection order; MATLAB's ``sort`` is stable, numpy's quicksort is not),
  and detections ignored on difficult objects that rank before any TP/FP (precision ``0/0``: NaN in
  ``voc_eval.py``, whose 11-point AP then becomes NaN) do not count (MATLAB's ``max`` skips NaN;
  Detectron's copy of ``voc_eval.py`` guards the division to the same effect). The MATLAB code's
  ``ovmax >= 0.5`` differs from ``voc_eval.py``'s ``>``; we use ``>``.

The COCO metric is pycocotools' ``COCOeval`` itself: a crowd gt is ignored (not a positive), and a
detection that matches no other gt but covers a crowd region (intersection over the detection's area
``>=`` the IoU threshold) is neither a true nor a false positive. The small / medium / large ranges
(``area`` ``<= 32**2``, ``32**2..96**2``, ``>= 96**2`` pixels) sort the gts by their ``'area'``
(COCO: the segmentation area) where given, else by the box area, and the unmatched detections by
their box area.

Breakdowns by object size and shape, for the questions the prior layout answers (which scales,
which aspect ratios). The buckets are defined here once (:data:`SIZE_EDGES`, :data:`ASPECT_EDGES`,
:func:`size_buckets`, :func:`aspect_buckets`) and shared with :mod:`ssd_jax.analysis`, so a box
lands in the same bucket in the prior-coverage tables as in these metrics:
  * size: COCO's ranges (small ``area < 32**2``, medium ``32**2 <= area < 96**2``, large
    ``area >= 96**2``) on box areas ``w * h`` measured with the image scaled to COCO's 640-px
    longer side (:func:`coco_area_scale`; ``image_sizes`` of :func:`evaluate_detections`): an
    object is small when it would be small in a COCO image, so VOC's 500-px photos, the 128-px
    synthetic set and any input resolution share one yardstick. The VOC metrics give
    ``ap_small``, ``ap_medium`` and ``ap_large``: the same AP with pycocotools' ``areaRng`` rules
    (:data:`SIZE_RANGES`, whose ends are inclusive as in pycocotools, so an area of exactly
    ``32**2`` counts in both neighbouring APs). Ground truths outside the range are ignored like
    difficult ones (a detection whose best overlap is one is neither TP nor FP), and so are false
    positives whose own area is outside it.
  * aspect: ``w / h`` in the network's frame (the box normalized by its image, as after SSD's
    aspect-warping square resize: the frame the priors' ratios live in), bucketed around the
    paper's ratios {1/3, 1/2, 1, 2, 3} (:data:`ASPECT_BUCKETS`) with edges at the geometric
    midpoints of neighbouring ratios, ``sqrt(1/6), sqrt(1/2), sqrt(2), sqrt(6)``. That is where a
    box stops fitting one prior shape best: two centred boxes of equal area have an IoU that
    depends only on the quotient of their ratios, so a box of ratio ``sqrt(a * b)`` overlaps the
    priors of ratios ``a`` and ``b`` equally. :func:`recall_by_aspect_ratio` gives the share of
    objects found (the devkit's matching, IoU > 0.5) per bucket.
  Both partitions are half-open, ``[lo, hi)``: a value on an edge goes to the bucket above it.

Classes are the labels ``1..C``. A class with no (non-difficult, non-crowd) ground truth has no
defined AP: it is reported as NaN in ``per_class_ap`` and left out of ``'map'``, which is the mean
over the remaining classes (COCO's own convention; for VOC every class has test objects anyway).
"""

import contextlib
import io
from typing import Any, Mapping, Sequence
import warnings

import numpy as np

METRICS = ('voc07', 'voc', 'coco')
VOC_IOU_THRESHOLD = 0.5
# The devkit's 11 recall points, built exactly as it builds them (see the module docstring).
_VOC07_RECALL_POINTS = np.arange(0., 1.1, 0.1)
# The buckets of object size and shape (see the module docstring), shared with ssd_jax.analysis.
SIZE_NAMES = ('small', 'medium', 'large')
SIZE_EDGES = (32.**2, 96.**2)  # pixels^2 in an image of COCO's size
# pycocotools' ``areaRng`` of each size (both ends inclusive): the VOC metrics' AP by size.
SIZE_RANGES = dict(zip(SIZE_NAMES, zip((0.,) + SIZE_EDGES, SIZE_EDGES + (1e5**2,))))
COCO_IMAGE_SIDE = 640.  # COCO's images are 640 px on their longer side.
ASPECT_NAMES = ('1to3', '1to2', '1to1', '2to1', '3to1')
# The paper's ratios bounded at their geometric midpoints.
ASPECT_EDGES = tuple(float(np.sqrt(r)) for r in (1 / 6, 1 / 2, 2, 6))
# Bucket name -> [lo, hi) of ``w / h``.
ASPECT_BUCKETS = dict(zip(ASPECT_NAMES, zip((0.,) + ASPECT_EDGES, ASPECT_EDGES + (np.inf,))))
# pycocotools' summary order.
_COCO_STATS = ('map', 'ap50', 'ap75', 'ap_small', 'ap_medium', 'ap_large',
               'ar1', 'ar10', 'ar100', 'ar_small', 'ar_medium', 'ar_large')


def to_pixels(boxes: Any, height: Any, width: Any) -> np.ndarray:
  """Normalized xyxy -> pixel xyxy (float64), e.g. model outputs and pipeline gt before evaluation.

  Args:
    boxes: ``[..., 4]`` normalized xyxy.
    height: image height in pixels: a scalar, or an array of the leading axes of ``boxes`` (e.g.
      ``[B]`` for ``[B, N, 4]`` boxes).
    width: image width in pixels, same shape as ``height``.

  Returns:
    ``boxes`` scaled by ``(width, height, width, height)``.
  """
  boxes = np.asarray(boxes, np.float64)
  height = np.asarray(height, np.float64)
  width = np.asarray(width, np.float64)
  if boxes.ndim < 1 or boxes.shape[-1] != 4:
    raise ValueError(f'to_pixels: boxes must have shape [..., 4], got {boxes.shape}.')
  if height.shape != width.shape or height.shape != boxes.shape[:height.ndim] or (
      height.ndim >= boxes.ndim):
    raise ValueError(f'to_pixels: height {height.shape} and width {width.shape} must be scalars or '
                     f'match the leading axes of boxes {boxes.shape}.')
  if not (np.all(np.isfinite(height)) and np.all(np.isfinite(width))
          and np.all(height > 0) and np.all(width > 0)):
    raise ValueError('to_pixels: height and width must be finite and positive.')
  scale = np.stack([width, height, width, height], axis=-1)
  scale = scale.reshape(height.shape + (1,) * (boxes.ndim - 1 - height.ndim) + (4,))
  return boxes * scale


def coco_area_scale(image_hw: Any) -> np.ndarray:
  """The factor taking pixel areas of an image of ``image_hw`` (``[..., 2]`` ``(height, width)``)
  to an image scaled to COCO's 640-px longer side, where :data:`SIZE_EDGES` apply."""
  return (COCO_IMAGE_SIDE / np.max(np.asarray(image_hw, np.float64), axis=-1))**2


def size_buckets(areas: Any) -> np.ndarray:
  """``[N]`` areas in pixels of a COCO-sized image -> ``[N]`` int32 index into :data:`SIZE_NAMES`
  (``[lo, hi)`` between :data:`SIZE_EDGES`)."""
  return np.searchsorted(SIZE_EDGES, np.asarray(areas), side='right').astype(np.int32)


def aspect_buckets(ratios: Any) -> np.ndarray:
  """``[N]`` ratios ``w / h`` -> ``[N]`` int32 index into :data:`ASPECT_NAMES` (``[lo, hi)``
  between :data:`ASPECT_EDGES`)."""
  return np.searchsorted(ASPECT_EDGES, np.asarray(ratios), side='right').astype(np.int32)


def evaluate_detections(ground_truth: Sequence[Mapping[str, Any]],
                        detections: Sequence[Mapping[str, Any]],
                        metric: str,
                        class_names: Sequence[str] | None = None,
                        num_classes: int | None = None,
                        image_sizes: Any = None) -> dict[str, Any]:
  """Detection AP of a whole evaluation set.

  Args:
    ground_truth: one dict per image: ``'boxes'`` ``[N, 4]`` xyxy **pixels**, ``'labels'`` ``[N]``
      int in ``1..C``, optional ``'difficult'`` ``[N]`` bool (VOC metrics only: ignored objects),
      ``'crowd'`` ``[N]`` bool (``iscrowd`` regions: ignored by every metric, see the module
      docstring), both False by default, and optional ``'area'`` ``[N]`` float (COCO only: the
      objects' areas in pixels of the original image, e.g. COCO's annotation ``area``, which
      decide the small / medium / large ranges; default: the box areas).
    detections: one dict per image, same order: ``'boxes'`` ``[K, 4]`` xyxy pixels, ``'scores'``
      ``[K]``, ``'labels'`` ``[K]`` int in ``1..C``. ``N`` or ``K`` may be 0.
    metric: one of ``'voc07'``, ``'voc'``, ``'coco'``.
    class_names: names of classes ``1..C`` (keys of ``per_class_ap``); default ``str(label)``.
    num_classes: ``C``; default ``len(class_names)``, else the largest label seen.
    image_sizes: ``[num_images, 2]`` ``(height, width)`` of the images in pixels: the VOC metrics'
      size ranges then apply to areas scaled to a 640-px longer side (see the module docstring);
      None: to the areas as given. COCO's own metric always uses the areas as given.

  Returns:
    JSON-serializable dict of Python floats: ``'map'`` and ``'per_class_ap'`` (class name -> AP,
    NaN for classes without ground truth, see the module docstring); for the VOC metrics also
    ``'ap_small'``, ``'ap_medium'``, ``'ap_large'`` (the mean over the classes with objects of
    that size; NaN when none has); for ``'coco'`` also ``'ap50'``,
    ``'ap75'``, ``'ap_small'``, ``'ap_medium'``, ``'ap_large'``, ``'ar1'``, ``'ar10'``, ``'ar100'``,
    ``'ar_small'``, ``'ar_medium'``, ``'ar_large'`` (NaN where pycocotools reports -1: no objects).
    COCO keeps pycocotools' limit of 100 detections per image and class.

  Raises:
    ValueError: unknown metric, or malformed input (named by image index and field).
  """
  if metric not in METRICS:
    raise ValueError(f'Unknown metric {metric!r}; expected one of {METRICS}.')
  if len(ground_truth) != len(detections):
    raise ValueError(f'ground_truth has {len(ground_truth)} images but detections has '
                     f'{len(detections)}; they must be aligned image by image.')
  gts = [_read_image(gt, f'ground_truth[{i}]', is_gt=True) for i, gt in enumerate(ground_truth)]
  dets = [_read_image(det, f'detections[{i}]', is_gt=False) for i, det in enumerate(detections)]
  num_classes = _num_classes(gts, dets, class_names, num_classes)

  if metric == 'coco':
    result = _evaluate_coco(gts, dets, num_classes)
    per_class = result.pop('per_class')
  else:
    use_07 = metric == 'voc07'
    scales = _area_scales(image_sizes, len(gts))
    per_class = _evaluate_voc(gts, dets, num_classes, use_07)
    result = {'map': _mean_defined(per_class)}
    for size, area_range in SIZE_RANGES.items():
      result[f'ap_{size}'] = _mean_defined(
          _evaluate_voc(gts, dets, num_classes, use_07, area_range, scales))
  if np.isnan(per_class).all():
    warnings.warn(f'evaluate_detections({metric!r}): no class has ground truth; mAP is NaN.')
  names = class_names if class_names is not None else [str(c) for c in range(1, num_classes + 1)]
  result['per_class_ap'] = {name: float(ap) for name, ap in zip(names, per_class)}
  return result


def recall_by_aspect_ratio(ground_truth: Sequence[Mapping[str, Any]],
                           detections: Sequence[Mapping[str, Any]],
                           num_classes: int | None = None,
                           image_sizes: Any = None) -> dict[str, float]:
  """Share of the objects found, overall and per bucket of their shape.

  An object is found when a detection of its class is its true positive in the devkit's matching
  (IoU > 0.5, see the module docstring), whatever the detection's score; difficult and crowd
  objects are not counted. Objects of all classes are pooled.

  Args:
    ground_truth: as for :func:`evaluate_detections` (pixel boxes).
    detections: as for :func:`evaluate_detections`.
    num_classes: as for :func:`evaluate_detections`.
    image_sizes: ``[num_images, 2]`` ``(height, width)`` of the images in pixels: ``w / h`` is then
      the ratio of the box normalized by its image, the network's frame (see the module
      docstring); None: the ratio of the pixel boxes as given.

  Returns:
    ``'recall'`` and ``'recall_ar_<bucket>'`` for each of :data:`ASPECT_BUCKETS` (``1to3``: tall,
    ``w / h`` below ``sqrt(1/6)``; ... ``3to1``: wide), Python floats; NaN for a bucket without
    objects.
  """
  if len(ground_truth) != len(detections):
    raise ValueError(f'ground_truth has {len(ground_truth)} images but detections has '
                     f'{len(detections)}; they must be aligned image by image.')
  gts = [_read_image(gt, f'ground_truth[{i}]', is_gt=True) for i, gt in enumerate(ground_truth)]
  dets = [_read_image(det, f'detections[{i}]', is_gt=False) for i, det in enumerate(detections)]
  _num_classes(gts, dets, None, num_classes)
  # Each image's height / width: takes a pixel box's w / h to the normalized box's.
  image_aspect = (np.ones(len(gts)) if image_sizes is None
                  else np.divide(*_image_sizes(image_sizes, len(gts)).T))
  ratios, found = [np.zeros(0)], [np.zeros(0, bool)]
  for gt, det, h_over_w in zip(gts, dets, image_aspect):
    ignored = _voc_ignored(gt)
    outcome, best_gt = _voc_match(gt, det, ignored)
    hit = np.zeros(len(ignored), bool)
    hit[best_gt[outcome == 1]] = True
    wh = gt['boxes'][~ignored, 2:] - gt['boxes'][~ignored, :2]
    with np.errstate(divide='ignore', invalid='ignore'):  # a zero-height box is as wide as any
      ratios.append(np.where(wh[:, 0] > 0, wh[:, 0] / wh[:, 1] * h_over_w, 0.))
    found.append(hit[~ignored])
  buckets, found = aspect_buckets(np.concatenate(ratios)), np.concatenate(found)
  result = {'recall': float(found.mean()) if found.size else float('nan')}
  for i, name in enumerate(ASPECT_NAMES):
    in_bucket = found[buckets == i]
    result[f'recall_ar_{name}'] = float(in_bucket.mean()) if in_bucket.size else float('nan')
  return result


def _mean_defined(values: np.ndarray) -> float:
  """Mean over the non-NaN entries (classes with an AP); NaN when there are none."""
  defined = values[~np.isnan(values)]
  return float(defined.mean()) if defined.size else float('nan')


# ------------------------------------------------------------------------------------------------
# Input checks.
# ------------------------------------------------------------------------------------------------


def _read_image(entry: Mapping[str, Any], where: str, is_gt: bool) -> dict[str, np.ndarray]:
  """One image's fields as validated numpy arrays (boxes float64 ``[N, 4]``, vectors ``[N]``)."""
  if not isinstance(entry, Mapping):
    raise ValueError(f'{where} must be a dict, got {type(entry).__name__}.')
  required = ('boxes', 'labels') if is_gt else ('boxes', 'scores', 'labels')
  for key in required:
    if key not in entry:
      raise ValueError(f'{where} has no {key!r} field.')
  boxes = np.asarray(entry['boxes'], np.float64)
  if boxes.size == 0:
    boxes = boxes.reshape(0, 4)
  if boxes.ndim != 2 or boxes.shape[1] != 4:
    raise ValueError(f"{where}['boxes']: expected shape [N, 4], got {boxes.shape}.")
  if not np.isfinite(boxes).all():
    raise ValueError(f"{where}['boxes'] contains NaN or inf.")
  if np.any(boxes[:, 2:] < boxes[:, :2]):
    raise ValueError(f"{where}['boxes'] must be xyxy with xmax >= xmin and ymax >= ymin.")
  out = {'boxes': boxes}
  n = len(boxes)
  out['labels'] = _vector(entry['labels'], n, f"{where}['labels']")
  if not np.issubdtype(out['labels'].dtype, np.integer):
    raise ValueError(f"{where}['labels'] must be integers, got dtype {out['labels'].dtype}.")
  if is_gt:
    for key in ('difficult', 'crowd'):
      flags = _vector(entry.get(key, np.zeros(n, bool)), n, f'{where}[{key!r}]')
      if flags.dtype != bool and not np.isin(flags, (0, 1)).all():
        raise ValueError(f'{where}[{key!r}] must be booleans (or 0/1).')
      out[key] = flags.astype(bool)
    box_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    area = _vector(entry.get('area', box_area), n, f"{where}['area']").astype(np.float64)
    if not (np.isfinite(area).all() and (area >= 0).all()):
      raise ValueError(f"{where}['area'] must be finite and >= 0.")
    out['area'] = area
  else:
    scores = _vector(entry['scores'], n, f"{where}['scores']").astype(np.float64)
    if not np.isfinite(scores).all():
      raise ValueError(f"{where}['scores'] contains NaN or inf.")
    out['scores'] = scores
  return out


def _vector(value: Any, n: int, where: str) -> np.ndarray:
  """``value`` as a ``[n]`` array (one entry per box); empty input of any dtype becomes int64."""
  vec = np.asarray(value)
  if vec.size == 0 and n == 0:
    return vec.reshape(0).astype(np.int64) if vec.dtype.kind == 'f' else vec.reshape(0)
  if vec.shape != (n,):
    raise ValueError(f'{where}: expected shape [{n}] (one per box), got {vec.shape}.')
  return vec


def _image_sizes(image_sizes: Any, num_images: int) -> np.ndarray:
  """``image_sizes`` as a validated ``[num_images, 2]`` float64 array of ``(height, width)``."""
  sizes = np.asarray(image_sizes, np.float64)
  if sizes.shape != (num_images, 2):
    raise ValueError(f'image_sizes: expected [{num_images}, 2] (height, width) per image, got '
                     f'shape {sizes.shape}.')
  if not (np.isfinite(sizes).all() and (sizes > 0).all()):
    raise ValueError('image_sizes: heights and widths must be finite and positive.')
  return sizes


def _area_scales(image_sizes: Any, num_images: int) -> np.ndarray:
  """``[num_images]`` factors taking each image's pixel areas to a 640-px longer side."""
  if image_sizes is None:
    return np.ones(num_images)
  return coco_area_scale(_image_sizes(image_sizes, num_images))


def _num_classes(gts: list[dict[str, np.ndarray]], dets: list[dict[str, np.ndarray]],
                 class_names: Sequence[str] | None, num_classes: int | None) -> int:
  """``C`` from the arguments (or the labels), after checking every label lies in ``1..C``."""
  if class_names is not None and num_classes is not None and len(class_names) != num_classes:
    raise ValueError(f'num_classes={num_classes} but {len(class_names)} class_names were given.')
  if num_classes is None and class_names is not None:
    num_classes = len(class_names)
  if num_classes is None:
    num_classes = max([int(d['labels'].max()) for d in gts + dets if len(d['labels'])] + [0])
  if num_classes < 0:
    raise ValueError(f'num_classes must be >= 0, got {num_classes}.')
  for name, images in (('ground_truth', gts), ('detections', dets)):
    for i, image in enumerate(images):
      bad = (image['labels'] < 1) | (image['labels'] > num_classes)
      if bad.any():
        raise ValueError(f"{name}[{i}]['labels'] has label {image['labels'][bad][0]} outside "
                         f'1..{num_classes} (0 is background and never a valid object label).')
  return num_classes


# ------------------------------------------------------------------------------------------------
# VOC.
# ------------------------------------------------------------------------------------------------


def _voc_iou(det_boxes: np.ndarray, gt_boxes: np.ndarray) -> np.ndarray:
  """``[K, 4]`` x ``[G, 4]`` pixel xyxy -> ``[K, G]`` IoU with the devkit's +1 inclusive widths."""
  d, g = det_boxes[:, None, :], gt_boxes[None, :, :]
  iw = np.maximum(np.minimum(d[..., 2], g[..., 2]) - np.maximum(d[..., 0], g[..., 0]) + 1., 0.)
  ih = np.maximum(np.minimum(d[..., 3], g[..., 3]) - np.maximum(d[..., 1], g[..., 1]) + 1., 0.)
  inter = iw * ih
  # Same operation order as the devkit (det area + gt area - intersection): bitwise equal IoUs.
  union = ((d[..., 2] - d[..., 0] + 1.) * (d[..., 3] - d[..., 1] + 1.)
           + (g[..., 2] - g[..., 0] + 1.) * (g[..., 3] - g[..., 1] + 1.) - inter)
  return inter / union


def _voc_ignored(gt: dict[str, np.ndarray]) -> np.ndarray:
  """``[G]`` bool: the gts that the VOC metrics ignore, difficult or crowd."""
  return gt['difficult'] | gt['crowd']


def _voc_match(gt: dict[str, np.ndarray], det: dict[str, np.ndarray],
               ignored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """The devkit's greedy matching of one image's detections (all classes at once).

  Args:
    gt: one image's validated ground truth (``boxes`` ``[G, 4]``, ``labels``).
    det: one image's validated detections (``boxes`` ``[K, 4]``, ``scores``, ``labels``).
    ignored: ``[G]`` bool, the gts that are neither found nor missed (difficult, crowd, or outside
      a size range).

  Returns:
    ``outcome`` ``[K]`` int8 per detection: 1 true positive, 0 false positive, -1 ignored (its
    best overlap is an ignored gt); ``best_gt`` ``[K]``: the gt each detection went to (0 when
    the image has none).
  """
  outcome = np.zeros(len(det['labels']), np.int8)
  if not len(gt['labels']) or not len(det['labels']):
    return outcome, np.zeros(len(det['labels']), np.int64)
  overlaps = _voc_iou(det['boxes'], gt['boxes'])
  overlaps[det['labels'][:, None] != gt['labels'][None, :]] = -1.  # Match within a class only.
  # Each detection goes to its best-overlap gt whatever was matched before; "detected" flags only
  # decide TP (the first detection in score order to reach that gt) against duplicate FP. So the
  # devkit's sequential loop reduces to "first occurrence per gt", and since the flags are per gt,
  # hence per image, the image-local score order gives the same result as the global one.
  best_gt, best_iou = overlaps.argmax(axis=1), overlaps.max(axis=1)
  hit = best_iou > VOC_IOU_THRESHOLD
  outcome[hit & ignored[best_gt]] = -1
  counted = np.flatnonzero(hit & ~ignored[best_gt])
  order = np.argsort(-det['scores'][counted], kind='stable')  # Stable: ties keep input order.
  _, first = np.unique(best_gt[counted[order]], return_index=True)
  outcome[counted[order[first]]] = 1
  return outcome, best_gt


def _voc_ap(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool) -> float:
  """AP from the ``[D]`` recall/precision curve of the ranked detections (devkit formulas)."""
  if use_07_metric:
    ap = 0.
    for t in _VOC07_RECALL_POINTS:
      reached = precision[recall >= t]
      ap += (reached.max() if reached.size else 0.) / 11.
    return float(ap)
  recall = np.concatenate([[0.], recall, [1.]])
  precision = np.concatenate([[0.], precision, [0.]])
  envelope = np.maximum.accumulate(precision[::-1])[::-1]
  steps = np.flatnonzero(recall[1:] != recall[:-1])
  return float(np.sum((recall[steps + 1] - recall[steps]) * envelope[steps + 1]))


def _box_areas(boxes: np.ndarray) -> np.ndarray:
  """``[N, 4]`` pixel xyxy -> ``[N]`` areas ``w * h`` (COCO's continuous widths, not the +1)."""
  return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _outside(boxes: np.ndarray, scale: float, area_range: tuple[float, float]) -> np.ndarray:
  """``[N]`` bool: box areas times ``scale`` outside ``[lo, hi]`` (pycocotools' inclusive ends)."""
  area = _box_areas(boxes) * scale
  return (area < area_range[0]) | (area > area_range[1])


def _evaluate_voc(gts: list[dict[str, np.ndarray]], dets: list[dict[str, np.ndarray]],
                  num_classes: int, use_07_metric: bool,
                  area_range: tuple[float, float] | None = None,
                  area_scales: np.ndarray | None = None) -> np.ndarray:
  """``[C]`` per-class VOC AP (NaN for classes without non-difficult, non-crowd ground truth).

  With ``area_range`` ``(lo, hi)``, the AP of the objects whose box area times the image's
  ``area_scales`` entry lies in ``[lo, hi]`` (pycocotools' rules, see the module docstring).
  """
  num_positives = np.zeros(num_classes + 1, np.int64)
  outcomes = [np.zeros(0, np.int8)]
  for i, (gt, det) in enumerate(zip(gts, dets)):
    ignored = _voc_ignored(gt)
    if area_range is not None:
      ignored = ignored | _outside(gt['boxes'], area_scales[i], area_range)
    outcome, _ = _voc_match(gt, det, ignored)
    if area_range is not None:
      outcome[(outcome == 0) & _outside(det['boxes'], area_scales[i], area_range)] = -1
    outcomes.append(outcome)
    num_positives += np.bincount(gt['labels'][~ignored], minlength=num_classes + 1)
  labels = np.concatenate([det['labels'] for det in dets] + [np.zeros(0, np.int64)])
  scores = np.concatenate([det['scores'] for det in dets] + [np.zeros(0)])
  outcomes = np.concatenate(outcomes)
  aps = np.full(num_classes, np.nan)
  for c in range(1, num_classes + 1):
    if num_positives[c] == 0:
      continue
    in_class = labels == c
    # Stable: equal scores keep image order, then detection order.
    ranked = outcomes[in_class][np.argsort(-scores[in_class], kind='stable')]
    # Ignored detections only repeat a curve point (or add a 0/0 one before the first TP/FP):
    # dropping them leaves both APs unchanged and the precision always defined.
    ranked = ranked[ranked >= 0]
    tp = np.cumsum(ranked == 1)
    fp = np.cumsum(ranked == 0)
    aps[c - 1] = _voc_ap(tp / float(num_positives[c]), tp / (tp + fp), use_07_metric)
  return aps


# ------------------------------------------------------------------------------------------------
# COCO.
# ------------------------------------------------------------------------------------------------


def _xywh(box: np.ndarray) -> list[float]:
  """Pixel xyxy ``[4]`` -> COCO ``[x, y, w, h]`` as Python floats."""
  return [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]


def _evaluate_coco(gts: list[dict[str, np.ndarray]], dets: list[dict[str, np.ndarray]],
                   num_classes: int) -> dict[str, Any]:
  """pycocotools ``COCOeval`` (bbox) on in-memory datasets; image ids are the input indices."""
  # Imported here: only the COCO metric needs pycocotools.
  from pycocotools.coco import COCO  # pylint: disable=g-import-not-at-top
  from pycocotools.cocoeval import COCOeval  # pylint: disable=g-import-not-at-top

  images = [{'id': i} for i in range(len(gts))]
  categories = [{'id': c, 'name': str(c)} for c in range(1, num_classes + 1)]
  annotations = []
  for i, gt in enumerate(gts):
    for box, label, crowd, area in zip(gt['boxes'], gt['labels'], gt['crowd'], gt['area']):
      # Ids start at 1: COCOeval uses id 0 to mean "unmatched".
      annotations.append({'id': len(annotations) + 1, 'image_id': i, 'category_id': int(label),
                          'bbox': _xywh(box), 'area': float(area), 'iscrowd': int(crowd)})
  results = [{'image_id': i, 'category_id': int(label), 'bbox': _xywh(box), 'score': float(score)}
             for i, det in enumerate(dets)
             for box, label, score in zip(det['boxes'], det['labels'], det['scores'])]

  with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress and the summary.
    coco_gt = COCO()
    coco_gt.dataset = {'images': images, 'categories': categories, 'annotations': annotations}
    coco_gt.createIndex()
    if results:
      coco_dt = coco_gt.loadRes(results)
    else:  # loadRes rejects an empty list; an empty result set is simply no annotations.
      coco_dt = COCO()
      coco_dt.dataset = {'images': images, 'categories': categories, 'annotations': []}
      coco_dt.createIndex()
    evaluator = COCOeval(coco_gt, coco_dt, iouType='bbox')
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()

  out = {key: float('nan') if value == -1 else float(value)
         for key, value in zip(_COCO_STATS, evaluator.stats)}
  # [IoU thresholds, recall points, classes] at area 'all' and 100 detections (the AP setting);
  # -1 marks classes without non-crowd ground truth.
  precision = evaluator.eval['precision'][:, :, :, 0, -1]
  per_class = np.full(num_classes, np.nan)
  for k, cat_id in enumerate(evaluator.params.catIds):
    valid = precision[:, :, k][precision[:, :, k] > -1]
    if valid.size:
      per_class[cat_id - 1] = valid.mean()
  out['per_class'] = per_class
  return out
