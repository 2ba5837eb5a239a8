"""Evaluation: the predict function over a dataset source, scored by :mod:`ssd_jax.metrics`.

Predictions run on device (:mod:`ssd_jax.inference`); boxes go back to the host once per batch,
where they are scaled to pixels of the original images and scored with
:func:`ssd_jax.metrics.evaluate_detections`. A run's evaluators (validation and eval split)
come from :func:`ssd_jax.experiment.create_evaluators`.
"""

import dataclasses
from typing import Any, Callable, Iterator, Optional, Sequence

import jax
from jax.experimental import multihost_utils
import numpy as np

from ssd_jax import analysis
from ssd_jax import metrics as metrics_lib
from ssd_jax import visualize
from ssd_jax.data import pipeline, sources

P = jax.sharding.PartitionSpec
# Per-object fields of the ground truth handed to the metrics (``area``: COCO's size ranges).
_GT_KEYS = ("boxes", "labels", "difficult", "crowd", "area")


def _gather(tree: Any) -> Any:
  """Process-local (or global) arrays -> the whole batch on every host, as NumPy."""
  if jax.process_count() == 1:
    return jax.device_get(tree)
  return multihost_utils.process_allgather(tree, tiled=True)


@dataclasses.dataclass(frozen=True)
class Evaluator:
  """Runs ``predict_fn`` over ``source`` and computes ``metrics``.

  Attributes:
    predict_fn: ``(params, images uint8 [B, S, S, 3]) -> detections``
      (:func:`ssd_jax.inference.make_predict_fn`).
    source: the evaluation source.
    class_names: names of labels ``1..C`` (the run's label map).
    image_size: ``S``, the model's input side.
    batch_size: images per forward pass, all processes; a multiple of the device count (the last
      batch is padded and its padding ignored).
    max_boxes: ground-truth boxes per image kept (``config.data.max_boxes``).
    metrics: names for :func:`ssd_jax.metrics.evaluate_detections` (``'voc07'``, ``'voc'``,
      ``'coco'``).
    mesh: the devices, batch sharded on ``'data'``.
    num_images_to_draw: the first images drawn with their detections by :meth:`run`.
    draw_score_threshold: detections drawn when their score is above it.
    priors: ``[P, 4]`` normalized cxcywh, the model's default boxes; when given, :meth:`run`
      also says how well they cover the ground truth (what training's matching can reach).
    match_threshold: the IoU at which a prior covers a box (``config.matching.iou_threshold``).
  """
  predict_fn: Callable[[Any, jax.Array], dict[str, jax.Array]]
  source: sources.Source
  class_names: Sequence[str]
  image_size: int
  batch_size: int
  max_boxes: int
  metrics: Sequence[str]
  mesh: jax.sharding.Mesh
  num_images_to_draw: int = 0
  draw_score_threshold: float = 0.3
  priors: Optional[np.ndarray] = None
  match_threshold: float = 0.5

  def __post_init__(self):
    if self.batch_size % self.mesh.devices.size:
      raise ValueError(f"Evaluator.batch_size={self.batch_size} must be a multiple of the "
                       f"{self.mesh.devices.size} devices")

  def predictions(self, params: Any) -> Iterator[tuple[np.ndarray, np.ndarray, dict, dict]]:
    """Yields ``(image uint8 [S, S, 3], orig_size (h, w), ground truth, detections)`` per real
    eval image; boxes are normalized xyxy (see ``metrics.to_pixels``)."""
    batches = pipeline.eval_iterator(self.source, image_size=self.image_size,
                                     batch_size=self.batch_size, max_boxes=self.max_boxes)
    sharding = jax.sharding.NamedSharding(self.mesh, P("data"))
    for batch in batches:
      images = jax.make_array_from_process_local_data(sharding, batch["image"])
      out = _gather(self.predict_fn(params, images))
      keys = [k for k in _GT_KEYS if k in batch]
      local = _gather({k: batch[k] for k in ("image", "mask", "orig_size", *keys)})
      for i in np.flatnonzero(local["mask"]):
        real = local["labels"][i] > 0
        n = int(out["num_detections"][i])
        gt = {k: local[k][i][real] for k in keys}
        det = {"boxes": out["boxes"][i, :n], "scores": out["scores"][i, :n],
               "labels": out["classes"][i, :n]}
        yield local["image"][i], local["orig_size"][i], gt, det

  def run(self, params: Any, step: int, png_path: Optional[str] = None) -> dict[str, Any]:
    """Metrics dict: ``step``, ``num_images`` (evaluated), ``num_images_unreadable`` (skipped,
    at most ``sources.MAX_UNREADABLE_SHARE`` of the source, else a ValueError); for each of ``metrics``, ``<metric>_map``,
    ``<metric>_per_class_ap`` and AP by object size (``<metric>_ap_small`` ..., COCO's also
    ``coco_ap50`` ...); the recall overall and by aspect ratio (``recall``,
    ``recall_ar_1to3`` ..., :func:`ssd_jax.metrics.recall_by_aspect_ratio`); with ``priors``,
    their coverage of the ground truth (:meth:`prior_coverage`). Draws the first
    ``num_images_to_draw`` images with their detections to ``png_path``."""
    drawn, ground_truth, detections, sizes, normalized = [], [], [], [], []
    for image, orig_size, gt, det in self.predictions(params):
      if len(drawn) < self.num_images_to_draw:
        drawn.append((image, gt, det))
      normalized.append(gt["boxes"])
      ground_truth.append({**gt, "boxes": metrics_lib.to_pixels(gt["boxes"], *orig_size)})
      detections.append({**det, "boxes": metrics_lib.to_pixels(det["boxes"], *orig_size)})
      sizes.append(orig_size)
    names = list(self.class_names)
    sizes = np.reshape(sizes, (-1, 2))
    # Unreadable images are skipped by reading (each named in a warning); more than a few stop the
    # evaluation rather than report metrics on a shrunken set.
    unreadable = self.source.num_examples - len(ground_truth)
    sources.check_unreadable(unreadable, self.source.num_examples, "evaluation")
    result: dict[str, Any] = {"step": int(step), "num_images": len(ground_truth),
                              "num_images_unreadable": unreadable}
    for metric in self.metrics:
      values = metrics_lib.evaluate_detections(ground_truth, detections, metric,
                                               class_names=names, image_sizes=sizes)
      result.update({f"{metric}_{key}": value for key, value in values.items()})
    result.update(metrics_lib.recall_by_aspect_ratio(ground_truth, detections, len(names),
                                                     image_sizes=sizes))
    if self.priors is not None:
      result.update(self.prior_coverage(normalized))
    if png_path and jax.process_index() == 0 and drawn:
      side = self.image_size  # drawn on the resized model input
      scaled = lambda d: {**d, "boxes": metrics_lib.to_pixels(d["boxes"], side, side)}
      visualize.draw_grid([im for im, _, _ in drawn], [scaled(d) for _, _, d in drawn], names,
                          png_path, [scaled(g) for _, g, _ in drawn],
                          score_threshold=self.draw_score_threshold)
    return result

  def prior_coverage(self, boxes: Sequence[np.ndarray]) -> dict[str, float]:
    """How well ``priors`` cover the ground truth, from each image's ``[G, 4]`` normalized xyxy
    ``boxes`` (difficult ones included: training matches them too).

    ``prior_recall``: the fraction of boxes whose best prior reaches ``match_threshold``, i.e.
    that matching's threshold step gives positives (the others get only their best prior);
    ``prior_mean_best_iou``: the mean of that best IoU. They depend on the priors and the data
    only, not on the weights: the ceiling a layout sets. NaN without ground-truth boxes.
    """
    flat = np.concatenate([np.reshape(b, (-1, 4)) for b in boxes] or [np.zeros((0, 4))])
    if not len(flat):
      return {"prior_recall": float("nan"), "prior_mean_best_iou": float("nan")}
    side = float(self.image_size)  # size buckets are not reported here: any pixel size will do
    cov = analysis.prior_coverage(flat, self.priors, self.match_threshold,
                                  image_hw=(side, side))
    return {"prior_recall": cov.recall, "prior_mean_best_iou": float(np.mean(cov.best_iou))}
