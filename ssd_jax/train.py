"""Training and evaluation of SSD: the loop around the data-parallel train step.

``train_and_evaluate(config, workdir)`` is the whole job; ``experiments/main.py`` only parses flags
and calls it. Every part (model, data, optimizer, step, evaluators) comes from
:mod:`ssd_jax.experiment`; the step itself is :mod:`ssd_jax.train_step`.

Writes to ``workdir``: ``label_map.json`` and ``priors.json`` (the prior layout,
:mod:`ssd_jax.prior_layout`; both before the first step), ``checkpoints/`` and, when the
config names a validation split, ``checkpoints_best/`` (:mod:`ssd_jax.checkpoints`), TensorBoard
event files, ``metrics.json`` (the last evaluation) and ``detections.png``.
"""

import json
import os
import signal
import sys
import time
from typing import Any, Optional

from absl import logging
from clu import metric_writers
import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from ssd_jax import checkpoints, experiment, prior_layout, train_step
from ssd_jax.data import label_map as label_map_lib

MODES = ("train", "eval", "train_and_eval")


class _Preempted:
  """Turns SIGTERM into a flag the loop polls, so the state is saved before exiting."""

  def __init__(self):
    self.requested = False
    self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    logging.warning("SIGTERM received: saving a checkpoint and stopping.")
    self.requested = True

  def restore(self):
    signal.signal(signal.SIGTERM, self._previous)


def _check_finite(state: train_step.TrainState, manager: ocp.CheckpointManager) -> None:
  bad = int(jax.device_get(state.first_bad_step))
  if bad >= 0:
    last = manager.latest_step()
    where = (f"the last checkpoint is step {last} in {manager.directory}" if last is not None
             else "no checkpoint was written yet")
    raise FloatingPointError(
        f"Non-finite loss or gradient at step {bad}: stopped without applying it ({where}; "
        "rerunning resumes from it). Lower config.optimizer.lr, enable "
        "config.optimizer.grad_clip_norm, or check the data.")


def _maybe_initialize_distributed(config: ml_collections.ConfigDict) -> None:
  dist = config.get("distributed")
  if dist and dist.get("initialize"):
    # Cross-process collectives between CPU devices need gloo (GPU/TPU ignore this setting).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    # Empty fields mean "auto-detect" (managed clusters: SLURM, Cloud TPU, ...).
    jax.distributed.initialize(
        coordinator_address=dist.get("coordinator_address") or None,
        num_processes=dist.get("num_processes") or None,
        process_id=dist.get("process_id") if dist.get("num_processes") else None)


class _Evaluation:
  """Evaluates params on the validation split (if any, keys ``val_*``) and the eval split, and
  writes TensorBoard scalars, ``metrics.json`` and ``detections.png``. During training the
  metrics also record the run's length (``num_train_steps``), so that a finished run is told
  apart from an interrupted one (``sweep``)."""

  def __init__(self, config, model, data: experiment.Data, mesh, workdir, writer,
               num_train_steps: Optional[int] = None):
    self.workdir, self.writer, self.num_train_steps = workdir, writer, num_train_steps
    self.val, self.eval = experiment.create_evaluators(config, model, data, mesh)

  def __call__(self, params: Any, step: int) -> dict[str, Any]:
    metrics = {}
    if self.val is not None:
      metrics.update({f"val_{k}": v for k, v in self.val.run(params, step).items()
                      if k != "step"})
    metrics = {**self.eval.run(params, step, os.path.join(self.workdir, "detections.png")),
               **metrics}
    self.writer.write_scalars(step, {k: v for k, v in metrics.items() if isinstance(v, float)})
    if self.num_train_steps is not None:
      metrics["num_train_steps"] = self.num_train_steps
    if jax.process_index() == 0:
      with open(os.path.join(self.workdir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    return metrics


def _evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """``--mode=eval``: the latest checkpoint, with the run's label map. Nothing is written before
  both are found."""
  run = experiment.load_trained_run(config, workdir)
  data = experiment.create_data(config, run.label_map, train=False)
  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  try:
    return _Evaluation(config, run.model, data, run.mesh, workdir, writer)(run.params, run.step)
  finally:
    writer.flush()


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       mode: str = "train_and_eval") -> dict[str, Any]:
  """Trains (resuming from ``workdir``) and/or evaluates; returns the last evaluation metrics
  (empty for ``mode='train'``)."""
  if mode not in MODES:
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
  _maybe_initialize_distributed(config)
  if mode == "eval":
    return _evaluate_checkpoint(config, workdir)
  mesh = experiment.create_mesh()
  training = experiment.create_training(config, mesh, workdir)
  config, data, model = training.config, training.data, training.model
  if jax.process_index() == 0:
    label_map_lib.save_or_check(data.label_map, workdir)
    prior_layout.save_or_check(training.priors, workdir)
  logging.info("Classes (%d): %s", data.label_map.num_classes, list(data.label_map.class_names))
  _log_priors(training.priors)
  if config.get("num_epochs"):
    logging.info("%g epochs of %d images in batches of %d: %d steps (evaluation every %d, "
                 "checkpoint every %d).", config.num_epochs, data.train.num_examples,
                 config.batch_size, config.num_train_steps, config.eval.every_steps,
                 config.checkpoint.every_steps)
  state = training.initial_state(config, mesh)
  manager, best_manager = checkpoints.managers(workdir, config, with_best=(
      mode == "train_and_eval" and data.val is not None))
  if manager.latest_step() is None and (config.get("pretrained_backbone")
                                        or config.get("init_from")):
    params = experiment.warm_start(config, jax.device_get(state.params), data.label_map)
    state = state.replace(params=jax.device_put(params, jax.sharding.NamedSharding(
        mesh, jax.sharding.PartitionSpec())))
  state = checkpoints.restore_latest(manager, state)
  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  evaluate = _Evaluation(config, model, data, mesh, workdir, writer, config.num_train_steps) \
      if mode == "train_and_eval" else None
  if evaluate is not None and evaluate.val is None:
    logging.info("No validation split in config.data: checkpoints_best/ is not written; the "
                 "reported metrics are those of the final step.")
  try:
    metrics = _train_loop(config, state, training.step_fn, data, mesh, manager, best_manager,
                          writer, evaluate)
  finally:
    for m in (manager, best_manager):
      if m is not None:
        m.wait_until_finished()
    writer.flush()
  multihost_utils.sync_global_devices("train_and_evaluate done")
  return metrics


def _log_priors(run_priors: prior_layout.RunPriors) -> None:
  spec = run_priors.spec
  logging.info("Priors: %d, boxes per cell %s on maps %s.", spec.num_priors, spec.boxes_per_cell,
               spec.feature_map_sizes)
  if run_priors.kmeans is not None:
    logging.info("k-means priors (%s) fitted to %d training boxes: mean best IoU of the boxes' "
                 "shapes with the per-cell boxes %.3f (the layout they replace: %.3f).",
                 run_priors.kmeans, run_priors.num_boxes, run_priors.mean_best_iou,
                 run_priors.replaced_mean_best_iou)


def _train_loop(config, state, step_fn, data, mesh, manager, best_manager, writer,
                evaluate: Optional[_Evaluation]) -> dict[str, Any]:
  """Steps from the state's step to ``num_train_steps``: logs, checkpoints, evaluations."""
  start, total = int(jax.device_get(state.step)), config.num_train_steps
  batches = experiment.train_batches(config, data.train, start_step=start)
  preempted = _Preempted()
  metrics: dict[str, Any] = {}
  pending, tick, tick_step = [], time.perf_counter(), start
  try:
    for step in range(start + 1, total + 1):
      state, step_metrics = step_fn(state, train_step.global_batch(next(batches), mesh))
      pending.append(step_metrics)
      if step % config.log_every_steps == 0 or step == total:
        _check_finite(state, manager)
        _log(writer, step, total, pending, config.batch_size, time.perf_counter() - tick,
             step - tick_step)
        pending, tick, tick_step = [], time.perf_counter(), step
      if step % config.checkpoint.every_steps == 0 or step == total or preempted.requested:
        _check_finite(state, manager)
        manager.save(step, args=ocp.args.StandardSave(state), force=True)
      if preempted.requested:
        manager.wait_until_finished()
        logging.warning("Stopped at step %d after SIGTERM; rerun to resume.", step)
        sys.exit(128 + signal.SIGTERM)
      if evaluate is not None and (step % config.eval.every_steps == 0 or step == total):
        # Orbax's async save of this step can lose its array metadata when the evaluation's
        # input pipeline runs alongside (seen with tfds sources): let it finish first.
        manager.wait_until_finished()
        metrics = evaluate(state.params, step)
        if best_manager is not None:
          best_manager.save(step, args=ocp.args.StandardSave(state), force=True, metrics={
              checkpoints.SCORE: metrics[f"val_{config.checkpoint.best_metric}"]})
  finally:
    preempted.restore()
  if evaluate is not None and not metrics:  # resumed at the end: still report
    metrics = evaluate(state.params, int(jax.device_get(state.step)))
  return metrics


def _log(writer, step: int, total: int, pending: list, batch_size: int, seconds: float,
         steps: int) -> None:
  means = jax.tree_util.tree_map(lambda *x: float(np.mean(x)), *jax.device_get(pending))
  ips = steps * batch_size / seconds
  writer.write_scalars(step, {**{f"train/{k}": v for k, v in means.items()},
                              "train/images_per_s": ips})
  logging.info("step %d/%d  loss %.4f (conf %.4f, loc %.4f)  lr %.2e  %.1f img/s  ETA %.0f s",
               step, total, means["loss"], means["conf_loss"], means["loc_loss"], means["lr"],
               ips, (total - step) * seconds / steps)
