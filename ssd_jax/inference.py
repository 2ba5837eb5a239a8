"""Inference: a data-parallel jitted forward + ``detect``, and dataset evaluation.

The prediction runs on device with static shapes (the model and :func:`ssd_jax.postprocess.detect`
in one jit); boxes go back to the host once per batch, where they are scaled to pixels of the
original images and scored with :func:`ssd_jax.evaluation.evaluate_detections`.
"""

import functools
from typing import Any, Callable, Optional

import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np

from ssd_jax import evaluation, models, postprocess, visualize
from ssd_jax.data import pipeline

P = jax.sharding.PartitionSpec


def make_predict_fn(model: models.SSD, priors: np.ndarray, eval_config: ml_collections.ConfigDict,
                    mesh: jax.sharding.Mesh) -> Callable:
  """``(params, images uint8 [B, S, S, 3]) -> detect()`` dict, batch sharded on ``'data'``.

  Detections are normalized xyxy boxes ``[B, K, 4]``, ``scores``, ``classes`` (1..C) and
  ``num_detections`` with ``K = eval_config.max_detections``.
  """
  detect = functools.partial(
      postprocess.detect, priors=jnp.asarray(priors),
      score_threshold=eval_config.score_threshold, iou_threshold=eval_config.nms_iou_threshold,
      pre_nms_top_k=eval_config.pre_nms_top_k, max_detections=eval_config.max_detections)

  def predict(params, images):
    loc, logits = model.apply({"params": params}, images.astype(jnp.float32))
    return detect(loc, logits)

  return jax.jit(jax.shard_map(predict, mesh=mesh, in_specs=(P(), P("data")),
                               out_specs=P("data")))


def _gather(tree: Any) -> Any:
  """Process-local (or global) arrays -> the whole batch on every host, as NumPy."""
  if jax.process_count() == 1:
    return jax.device_get(tree)
  return multihost_utils.process_allgather(tree, tiled=True)


class Evaluator:
  """Runs the model over an evaluation source and computes ``config.eval.metrics``."""

  def __init__(self, model: models.SSD, priors: np.ndarray, source: Any,
               config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh):
    self.model, self.source, self.config, self.mesh = model, source, config, mesh
    self.predict = make_predict_fn(model, priors, config.eval, mesh)

  def predictions(self, params: Any):
    """Yields ``(image uint8 [S, S, 3], orig_size (h, w), ground truth, detections)`` per real
    eval image; boxes are normalized xyxy (see ``evaluation.to_pixels``)."""
    cfg = self.config
    batches = pipeline.eval_iterator(self.source, image_size=self.model.image_size,
                                     batch_size=cfg.eval.batch_size, max_boxes=cfg.data.max_boxes)
    sharding = jax.sharding.NamedSharding(self.mesh, P("data"))
    for batch in batches:
      images = jax.make_array_from_process_local_data(sharding, batch["image"])
      out = _gather(self.predict(params, images))
      local = _gather({k: batch[k] for k in ("image", "boxes", "labels", "difficult", "crowd",
                                             "mask", "orig_size")})
      for i in np.flatnonzero(local["mask"]):
        real = local["labels"][i] > 0
        n = int(out["num_detections"][i])
        gt = {k: local[k][i][real] for k in ("boxes", "labels", "difficult", "crowd")}
        det = {"boxes": out["boxes"][i, :n], "scores": out["scores"][i, :n],
               "labels": out["classes"][i, :n]}
        yield local["image"][i], local["orig_size"][i], gt, det

  def run(self, params: Any, step: int, png_path: Optional[str] = None) -> dict[str, Any]:
    """Metrics dict: ``step``, ``num_images`` and, for each metric in ``config.eval.metrics``,
    ``<metric>_map``, ``<metric>_per_class_ap`` (and COCO's ``coco_ap50`` ...); draws the first
    ``config.eval.num_images_to_draw`` images with their detections to ``png_path``."""
    drawn, ground_truth, detections = [], [], []
    for image, orig_size, gt, det in self.predictions(params):
      if len(drawn) < self.config.eval.num_images_to_draw:
        drawn.append((image, gt, det))
      ground_truth.append({**gt, "boxes": evaluation.to_pixels(gt["boxes"], *orig_size)})
      detections.append({**det, "boxes": evaluation.to_pixels(det["boxes"], *orig_size)})
    names = list(self.source.class_names)
    metrics: dict[str, Any] = {"step": int(step), "num_images": len(ground_truth)}
    for metric in self.config.eval.metrics:
      result = evaluation.evaluate_detections(ground_truth, detections, metric,
                                              class_names=names)
      metrics.update({f"{metric}_{key}": value for key, value in result.items()})
    if png_path and jax.process_index() == 0 and drawn:
      side = self.model.image_size  # drawn on the resized model input
      scaled = lambda d: {**d, "boxes": evaluation.to_pixels(d["boxes"], side, side)}
      visualize.draw_grid([im for im, _, _ in drawn], [scaled(d) for _, _, d in drawn], names,
                          png_path, [scaled(g) for _, g, _ in drawn],
                          score_threshold=self.config.eval.draw_score_threshold)
    return metrics
