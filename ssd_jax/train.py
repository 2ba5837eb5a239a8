"""Training and evaluation of SSD: the loop around the data-parallel train step.

``train_and_evaluate(config, workdir)`` is the whole job; ``experiments/main.py`` only parses flags
and calls it. ``train_stacked(configs, workdirs)`` trains runs that share their shapes together
(e.g. seeds of one config, ``experiments/sweep.py --stack``), each as if alone. Every part
(model, data, optimizer, step, evaluators) comes from :mod:`ssd_jax.experiment`; the step itself
is :mod:`ssd_jax.train_step`.

Writes to ``workdir``: ``label_map.json`` and ``priors.json`` (the prior layout,
:mod:`ssd_jax.run_priors`; both before the first step), ``checkpoints/`` and, when the
config names a validation split, ``checkpoints_best/`` (:mod:`ssd_jax.checkpoints`), TensorBoard
event files, ``metrics.json`` (the last evaluation) and ``detections.png``.
"""

import dataclasses
import json
import os
import signal
import sys
import time
from typing import Any, Callable, Iterator, Optional, Sequence

from absl import logging
from clu import metric_writers
import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from ssd_jax import checkpoints, experiment, run_priors, train_step
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


def _check_finite(bad: int, manager: ocp.CheckpointManager) -> None:
  """Stops the run whose ``state.first_bad_step`` is ``bad`` if that is a step (not -1)."""
  if bad >= 0:
    last = manager.latest_step()
    where = (f"the last checkpoint is step {last} in {manager.directory}" if last is not None
             else f"no checkpoint was written yet in {manager.directory}")
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


@dataclasses.dataclass(frozen=True)
class _Run:
  """One run's outputs: where it writes, its checkpoint managers, writer and evaluation."""
  config: ml_collections.ConfigDict
  workdir: str
  manager: ocp.CheckpointManager
  best_manager: Optional[ocp.CheckpointManager]
  writer: Any
  evaluate: Optional[_Evaluation]

  def close(self) -> None:
    for m in (self.manager, self.best_manager):
      if m is not None:
        m.wait_until_finished()
    self.writer.flush()


def _start_run(training: experiment.Training, workdir: str, mode: str,
               mesh: jax.sharding.Mesh) -> tuple[train_step.TrainState, _Run]:
  """Writes the run's label map and priors, and returns its state (restored from ``workdir`` if
  it has a checkpoint, else initialized, warm-started as the config says) and outputs."""
  config, data = training.config, training.data
  if jax.process_index() == 0:
    label_map_lib.save_or_check(data.label_map, workdir)
    run_priors.save_or_check(training.priors, workdir)
  logging.info("Classes (%d): %s", data.label_map.num_classes, list(data.label_map.class_names))
  _log_priors(training.priors)
  if config.get("freeze_layers"):
    logging.info("Frozen at their loaded values (no gradient, no update): %s",
                 list(config.freeze_layers))
  logging.info("Planned: %d steps of batch %d, %.1f epochs of the %d training images "
               "(evaluation every %d steps, checkpoint every %d).", config.num_train_steps,
               config.batch_size, config.num_train_steps * config.batch_size
               / max(1, data.train.num_examples), data.train.num_examples,
               config.eval.every_steps, config.checkpoint.every_steps)
  if config.model.get("dtype") == "bfloat16" and jax.default_backend() == "cpu":
    # Measured on AVX2, AVX-512 and AMX CPUs (benchmarks/HISTORY.md): the CPU convolutions
    # compute in float32 either way and XLA:CPU has no faster bfloat16 matmul, so bf16 there
    # only adds casts. Said once, so that nobody takes it for a speed-up.
    logging.warning("model.dtype=bfloat16 on a CPU: expect it slower than float32 (the CPU "
                    "convolutions compute in float32; bfloat16 pays off on GPUs and TPUs).")
  manager, best_manager = checkpoints.managers(workdir, config, with_best=(
      mode == "train_and_eval" and data.val is not None))
  state = training.initial_state(config, mesh, load_weights=manager.latest_step() is None)
  state = checkpoints.restore_latest(manager, state)
  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  evaluate = _Evaluation(config, training.model, data, mesh, workdir, writer,
                         config.num_train_steps) if mode == "train_and_eval" else None
  if evaluate is not None and evaluate.val is None:
    logging.info("No validation split in config.data: checkpoints_best/ is not written; the "
                 "reported metrics are those of the final step.")
  return state, _Run(config, workdir, manager, best_manager, writer, evaluate)


def _check_mode(mode: str) -> None:
  if mode not in MODES:
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       mode: str = "train_and_eval") -> dict[str, Any]:
  """Trains (resuming from ``workdir``) and/or evaluates; returns the last evaluation metrics
  (empty for ``mode='train'``)."""
  _check_mode(mode)
  _maybe_initialize_distributed(config)
  if mode == "eval":
    return _evaluate_checkpoint(config, workdir)
  mesh = experiment.create_mesh()
  training = experiment.create_training(config, mesh, workdir)
  state, run = _start_run(training, workdir, mode, mesh)
  batches = experiment.train_batches(training.config, training.data.train,
                                     start_step=int(jax.device_get(state.step)))
  try:
    (metrics,) = _train_loop(state, training.step_fn,
                             (train_step.global_batch(b, mesh) for b in batches), [run])
  finally:
    run.close()
  multihost_utils.sync_global_devices("train_and_evaluate done")
  return metrics


def train_stacked(configs: Sequence[ml_collections.ConfigDict], workdirs: Sequence[str],
                  mode: str = "train_and_eval") -> list[dict[str, Any]]:
  """Trains runs that differ only in ``experiment.STACKABLE`` fields together, in one compiled
  step over their stacked states (``experiment.create_stacked_train_step``); each run resumes
  from and writes to its own workdir exactly as :func:`train_and_evaluate` would. All must be at
  the same step (fresh, or stopped together). Returns each run's last evaluation metrics."""
  _check_mode(mode)
  if mode == "eval":
    raise ValueError("train_stacked trains; evaluate a run with train_and_evaluate(mode='eval')")
  if len(configs) != len(workdirs) or len(set(workdirs)) != len(workdirs):
    raise ValueError(f"train_stacked: {len(configs)} configs need as many distinct workdirs, "
                     f"got {list(workdirs)}")
  experiment.check_stackable(configs)
  _maybe_initialize_distributed(configs[0])
  mesh = experiment.create_mesh()
  trainings = [experiment.create_training(c, mesh, w) for c, w in zip(configs, workdirs)]
  started = [_start_run(t, w, mode, mesh) for t, w in zip(trainings, workdirs)]
  runs = [run for _, run in started]
  steps = [int(jax.device_get(state.step)) for state, _ in started]
  try:
    if len(set(steps)) > 1:
      raise ValueError(f"train_stacked: the runs are at different steps {steps} "
                       f"({list(workdirs)}); resume them one by one")
    step_fn, shared = experiment.create_stacked_train_step(trainings, mesh)
    per_run = [experiment.train_batches(t.config, t.data.train, start_step=steps[0])
               for t in (trainings[:1] if shared else trainings)]
    batches = (train_step.global_batch(b[0] if shared else train_step.stack_batches(b), mesh,
                                       stacked=not shared)
               for b in zip(*per_run))
    metrics = _train_loop(train_step.stack([state for state, _ in started]), step_fn, batches,
                          runs)
  finally:
    for run in runs:
      run.close()
  multihost_utils.sync_global_devices("train_stacked done")
  return metrics


def _log_priors(layout: run_priors.RunPriors) -> None:
  spec = layout.spec
  logging.info("Priors: %d, boxes per cell %s on maps %s.", spec.num_priors, spec.boxes_per_cell,
               spec.feature_map_sizes)
  if layout.kmeans is not None:
    logging.info("k-means priors (%s) fitted to %d training boxes: mean best IoU of the boxes' "
                 "shapes with the per-cell boxes %.3f (the layout they replace: %.3f).",
                 layout.kmeans, layout.num_boxes, layout.mean_best_iou,
                 layout.replaced_mean_best_iou)


def _train_loop(state: train_step.TrainState, step_fn: Callable, batches: Iterator[Any],
                runs: Sequence[_Run]) -> list[dict[str, Any]]:
  """Steps from the state's step to ``num_train_steps``: logs, checkpoints, evaluations.

  One run (``state`` as it is) or several stacked on a leading axis (``len(runs) > 1``): each
  run's slice is logged, checked, checkpointed and evaluated in its own workdir. The runs share
  their length and periods (``experiment.check_stackable``)."""
  stacked = len(runs) > 1
  view = (lambda tree, r: train_step.unstack(tree, r)) if stacked else (lambda tree, r: tree)
  config = runs[0].config
  start, total = int(np.max(jax.device_get(state.step))), config.num_train_steps
  preempted = _Preempted()
  metrics: list[dict[str, Any]] = [{} for _ in runs]
  pending, tick, tick_step = [], time.perf_counter(), start
  try:
    for step in range(start + 1, total + 1):
      state, step_metrics = step_fn(state, next(batches))
      pending.append(step_metrics)
      if step % config.log_every_steps == 0 or step == total:
        pending = jax.device_get(pending)
        bad = _first_bad_steps(state)
        for r, run in enumerate(runs):
          _check_finite(bad[r], run.manager)
          _log(run.writer, step, total, [view(m, r) for m in pending], config.batch_size,
               time.perf_counter() - tick, step - tick_step)
        pending, tick, tick_step = [], time.perf_counter(), step
      if step % config.checkpoint.every_steps == 0 or step == total or preempted.requested:
        bad = _first_bad_steps(state)
        for r, run in enumerate(runs):
          _check_finite(bad[r], run.manager)
          run.manager.save(step, args=ocp.args.StandardSave(view(state, r)), force=True)
      if preempted.requested:
        for run in runs:
          run.manager.wait_until_finished()
        logging.warning("Stopped at step %d after SIGTERM; rerun to resume.", step)
        sys.exit(128 + signal.SIGTERM)
      if step % config.eval.every_steps == 0 or step == total:
        for r, run in enumerate(runs):
          if run.evaluate is None:
            continue
          # Orbax's async save of this step can lose its array metadata when the evaluation's
          # input pipeline runs alongside (seen with tfds sources): let it finish first.
          run.manager.wait_until_finished()
          metrics[r] = run.evaluate(view(state.params, r), step)
          if run.best_manager is not None:
            run.best_manager.save(step, args=ocp.args.StandardSave(view(state, r)), force=True,
                                  metrics={checkpoints.SCORE: metrics[r][
                                      f"val_{config.checkpoint.best_metric}"]})
  finally:
    preempted.restore()
  for r, run in enumerate(runs):
    if run.evaluate is not None and not metrics[r]:  # resumed at the end: still report
      metrics[r] = run.evaluate(view(state.params, r), int(jax.device_get(view(state.step, r))))
  return metrics


def _first_bad_steps(state: train_step.TrainState) -> list[int]:
  """Each run's ``first_bad_step`` (one run, or several stacked), read without slicing the
  runs' states out: a slice copies every parameter and optimizer moment (~200-300 MB for
  SSD300), one array at a time."""
  return [int(b) for b in np.ravel(jax.device_get(state.first_bad_step))]


def _log(writer, step: int, total: int, pending: list, batch_size: int, seconds: float,
         steps: int) -> None:
  means = jax.tree_util.tree_map(lambda *x: float(np.mean(x)), *jax.device_get(pending))
  ips = steps * batch_size / seconds
  writer.write_scalars(step, {**{f"train/{k}": v for k, v in means.items()},
                              "train/images_per_s": ips})
  logging.info("step %d/%d  loss %.4f (conf %.4f, loc %.4f)  lr %.2e  %.1f img/s  ETA %.0f s",
               step, total, means["loss"], means["conf_loss"], means["loc_loss"], means["lr"],
               ips, (total - step) * seconds / steps)
