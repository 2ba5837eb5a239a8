"""Training and evaluation of SSD: one data-parallel jit-compiled step, orbax checkpoints, metrics.

``train_and_evaluate(config, workdir)`` is the whole job; ``experiments/main.py`` only parses flags
and calls it. The config fields are documented in ``experiments/configs/synthetic.py``.

Data parallelism: the step is written for one device (``_train_step``) with collectives over the
``'data'`` mesh axis and run with ``jax.shard_map`` over all devices of all processes. The
multibox loss is normalized by the positives of the *global* batch and gradients are summed over
devices, so any device count gives the single-device result (up to float summation order).
"""

import functools
import json
import os
import signal
import sys
import time
from typing import Any, Callable, Optional

from absl import logging
from clu import metric_writers
import flax
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp

from ssd_jax import inference, losses, matching, models, priors as priors_lib
from ssd_jax.data import config as data_config
from ssd_jax.data import pipeline

P = jax.sharding.PartitionSpec


@flax.struct.dataclass
class TrainState:
  """Everything a checkpoint holds. ``first_bad_step`` is -1 until a loss is non-finite."""
  step: jnp.ndarray
  params: Any
  opt_state: Any
  first_bad_step: jnp.ndarray


# ---------------------------------------------------------------------------------------------
# Model, priors and optimizer from the config.
# ---------------------------------------------------------------------------------------------
def prior_spec_from_config(config: ml_collections.ConfigDict) -> Optional[priors_lib.PriorSpec]:
  """The model's default layout, a preset, or the paper's linear rule (None = model default).

  ``config.model.prior_preset`` names one of ``priors.PRESETS`` (e.g. ``'SSD300_COCO'``).
  ``config.priors`` (for ablations): ``layers`` (source layer names, a subset of the model's
  default ``layer_names``, None = all), ``s_min``, ``s_max``, ``first_scale`` (None = pure linear
  rule) and ``aspect_ratios`` (one tuple for all layers or one per layer; None = the model's).
  """
  cfg, preset = config.get("priors"), config.model.get("prior_preset")
  if cfg and preset:
    raise ValueError("set config.priors or config.model.prior_preset, not both")
  if preset:
    if preset not in priors_lib.PRESETS:
      raise ValueError(f"config.model.prior_preset={preset!r}; valid: {list(priors_lib.PRESETS)}")
    return priors_lib.PRESETS[preset]
  if not cfg:
    return None
  base = models.create_model(config.model.name, 1).prior_spec
  names = tuple(cfg.get("layers") or base.layer_names)
  unknown = [n for n in names if n not in base.layer_names]
  if unknown:
    raise ValueError(f"config.priors.layers: {unknown} are not source layers of "
                     f"{config.model.name} ({base.layer_names})")
  sizes = [base.feature_map_sizes[base.layer_names.index(n)] for n in names]
  ratios = cfg.get("aspect_ratios")
  if ratios is None:  # the model's own ratios of the kept layers
    ratios = [base.aspect_ratios[base.layer_names.index(n)] for n in names]
  return priors_lib.from_linear_scales(sizes, cfg.s_min, cfg.s_max, ratios,
                                       cfg.get("first_scale"), image_size=base.image_size,
                                       layer_names=names)


def create_model(config: ml_collections.ConfigDict, num_classes: int) -> models.SSD:
  dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[config.model.get("dtype", "float32")]
  return models.create_model(config.model.name, num_classes, dtype=dtype,
                             prior_spec=prior_spec_from_config(config),
                             conv_impl=config.model.get("conv_impl", "xla"))


def create_learning_rate_fn(config: ml_collections.ConfigDict) -> optax.Schedule:
  """Linear warm-up to ``optimizer.lr``, then x ``decay_factor`` at each of ``decay_steps``."""
  opt = config.optimizer
  boundaries = {int(s): opt.decay_factor for s in opt.get("decay_steps", ())}
  main = optax.piecewise_constant_schedule(opt.lr, boundaries)
  warmup = int(opt.get("warmup_steps", 0))
  if warmup == 0:
    return main
  ramp = optax.linear_schedule(opt.lr * opt.get("warmup_factor", 0.1), opt.lr, warmup)
  return lambda step: jnp.where(step < warmup, ramp(step), main(step))


def create_optimizer(config: ml_collections.ConfigDict,
                     lr_fn: optax.Schedule) -> optax.GradientTransformation:
  """SGD with momentum (the paper) or Adam(W); L2 weight decay on kernels only (as Caffe's
  ``decay_mult: 0`` on biases); optional global-norm gradient clipping."""
  opt = config.optimizer
  parts = []
  if opt.get("grad_clip_norm"):
    parts.append(optax.clip_by_global_norm(opt.grad_clip_norm))
  kernels_only = lambda params: jax.tree_util.tree_map(lambda p: p.ndim > 1, params)
  if opt.name == "sgd":
    if opt.weight_decay:
      parts.append(optax.add_decayed_weights(opt.weight_decay, mask=kernels_only))
    parts.append(optax.sgd(lr_fn, momentum=opt.momentum, nesterov=opt.get("nesterov", False)))
  elif opt.name == "adamw":
    parts.append(optax.adamw(lr_fn, weight_decay=opt.weight_decay, mask=kernels_only))
  else:
    raise ValueError(f"config.optimizer.name must be 'sgd' or 'adamw', got {opt.name!r}")
  return optax.chain(*parts)


# ---------------------------------------------------------------------------------------------
# The train step (per device) and its sharded, jitted wrapper.
# ---------------------------------------------------------------------------------------------
def _train_step(state: TrainState, batch: dict[str, jnp.ndarray], *, model: models.SSD,
                tx: optax.GradientTransformation, priors: jnp.ndarray, lr_fn: optax.Schedule,
                config: ml_collections.ConfigDict) -> tuple[TrainState, dict[str, jnp.ndarray]]:
  """One SGD step on this device's part of the batch; collectives over the ``'data'`` axis."""
  match_cfg, loss_cfg = config.matching, config.loss
  targets_fn = functools.partial(matching.encode_targets, priors=priors,
                                 iou_threshold=match_cfg.iou_threshold,
                                 variances=tuple(match_cfg.variances), mode=match_cfg.mode)
  loc_t, cls_t = jax.vmap(targets_fn)(batch["boxes"], batch["labels"])

  def loss_fn(params):
    loc, logits = model.apply({"params": params}, batch["image"].astype(jnp.float32), train=True)
    return losses.multibox_loss(loc, logits, loc_t, cls_t, neg_pos_ratio=loss_cfg.neg_pos_ratio,
                                alpha=loss_cfg.alpha, axis_name="data")

  (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  # Each device's loss is already divided by the global positives: sum, do not average. The
  # gradients need no collective: the replicated params enter this per-device loss through an
  # implicit broadcast over 'data' (shard_map's varying-axis types), whose transpose is a psum,
  # so autodiff returns them already summed over devices (and replicated).
  loss, aux = jax.lax.psum((loss, aux), "data")
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  grad_norm = optax.tree.norm(grads)
  ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & jnp.isfinite(optax.tree.norm(updates))
  # A non-finite step leaves params untouched; the host stops at its next check (see _check).
  keep = lambda new, old: jax.tree_util.tree_map(lambda n, o: jnp.where(ok, n, o), new, old)
  new_state = TrainState(
      step=state.step + 1, params=keep(params, state.params),
      opt_state=keep(opt_state, state.opt_state),
      first_bad_step=jnp.where(ok | (state.first_bad_step >= 0), state.first_bad_step,
                               state.step + 1))  # 1-based, as logged
  metrics = {"loss": loss, **aux, "grad_norm": grad_norm, "lr": lr_fn(state.step)}
  return new_state, metrics


def make_train_step(model: models.SSD, tx: optax.GradientTransformation, priors: np.ndarray,
                    lr_fn: optax.Schedule, config: ml_collections.ConfigDict,
                    mesh: jax.sharding.Mesh) -> Callable:
  """``(state, batch) -> (state, metrics)``: jitted, state replicated and donated, batch sharded
  on ``'data'``."""
  step = functools.partial(_train_step, model=model, tx=tx, priors=jnp.asarray(priors),
                           lr_fn=lr_fn, config=config)
  sharded = jax.shard_map(step, mesh=mesh, in_specs=(P(), P("data")), out_specs=(P(), P()))
  return jax.jit(sharded, donate_argnums=0)


def create_train_state(model: models.SSD, tx: optax.GradientTransformation, seed: int,
                       mesh: jax.sharding.Mesh) -> TrainState:
  """Initial state, replicated over ``mesh``."""
  size = model.image_size

  def init():
    dummy = jnp.zeros((1, size, size, 3), jnp.float32)
    params = model.init(jax.random.key(seed), dummy)["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                      first_bad_step=jnp.full((), -1, jnp.int32))

  replicated = jax.sharding.NamedSharding(mesh, P())
  # Runs once: XLA's backend optimizations would cost far more compile time than they save
  # (13 s vs 2.6 s for ssd_tiny on 2 CPU cores).
  return jax.jit(init, out_shardings=replicated,
                 compiler_options={"xla_backend_optimization_level": 0})()


def global_batch(batch: dict[str, np.ndarray], mesh: jax.sharding.Mesh) -> dict[str, jax.Array]:
  """This process's part of the batch -> global arrays sharded on ``'data'``."""
  sharding = jax.sharding.NamedSharding(mesh, P("data"))
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


# ---------------------------------------------------------------------------------------------
# Checkpoints.
# ---------------------------------------------------------------------------------------------
def checkpoint_managers(workdir: str, config: ml_collections.ConfigDict):
  """The last ``checkpoint.keep`` states, and the best one by ``checkpoint.best_metric``."""
  last = ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"),
                               options=ocp.CheckpointManagerOptions(
                                   max_to_keep=config.checkpoint.keep))
  metric = config.checkpoint.best_metric
  best = ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints_best"),
                               options=ocp.CheckpointManagerOptions(
                                   max_to_keep=1, best_fn=lambda m: m[metric], best_mode="max"))
  return last, best


def restore_latest(manager: ocp.CheckpointManager, state: TrainState) -> TrainState:
  step = manager.latest_step()
  if step is None:
    return state
  logging.info("Resuming from %s/%d", manager.directory, step)
  return manager.restore(step, args=ocp.args.StandardRestore(state))


# ---------------------------------------------------------------------------------------------
# The loop.
# ---------------------------------------------------------------------------------------------
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


def _check_finite(state: TrainState, manager: ocp.CheckpointManager) -> None:
  bad = int(jax.device_get(state.first_bad_step))
  if bad >= 0:
    last = manager.latest_step()
    where = (f"the last checkpoint is step {last} in {manager.directory}" if last is not None
             else "no checkpoint was written yet")
    raise FloatingPointError(
        f"Non-finite loss or gradient at step {bad}: stopped without applying it ({where}; "
        "rerunning resumes from it). Lower config.optimizer.lr, enable "
        "config.optimizer.grad_clip_norm, or check the data.")


def _write_metrics_json(workdir: str, metrics: dict[str, Any]) -> None:
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "metrics.json"), "w") as f:
      json.dump(metrics, f, indent=2)


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


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       mode: str = "train_and_eval") -> dict[str, Any]:
  """Trains (resuming from ``workdir``) and/or evaluates; returns the last evaluation metrics.

  Writes to ``workdir``: ``checkpoints/``, ``checkpoints_best/``, TensorBoard event files,
  ``metrics.json`` (last evaluation) and ``detections.png`` (detections on held-out images).
  """
  if mode not in ("train", "eval", "train_and_eval"):
    raise ValueError(f"mode must be train, eval or train_and_eval, got {mode!r}")
  _maybe_initialize_distributed(config)
  os.makedirs(workdir, exist_ok=True)
  mesh = jax.make_mesh((jax.device_count(),), ("data",))
  if config.batch_size % jax.device_count():
    raise ValueError(f"config.batch_size={config.batch_size} must be divisible by the "
                     f"{jax.device_count()} devices")

  train_source = data_config.make_source(config.data, train=True)
  eval_source = data_config.make_source(config.data, train=False)
  model = create_model(config, num_classes=len(train_source.class_names))
  prior_boxes = priors_lib.generate(model.prior_spec)
  lr_fn = create_learning_rate_fn(config)
  tx = create_optimizer(config, lr_fn)
  state = create_train_state(model, tx, config.seed, mesh)
  if config.get("pretrained_backbone") and mode != "eval":
    from ssd_jax import pretrained  # pylint: disable=g-import-not-at-top
    state = state.replace(params=pretrained.load_vgg16_backbone(config.pretrained_backbone,
                                                                state.params))
  manager, best_manager = checkpoint_managers(workdir, config)
  state = restore_latest(manager, state)
  writer = metric_writers.create_default_writer(workdir,
                                                just_logging=jax.process_index() > 0)
  evaluator = inference.Evaluator(model, prior_boxes, eval_source, config, mesh)

  def evaluate(step: int) -> dict[str, Any]:
    metrics = evaluator.run(state.params, step,
                            png_path=os.path.join(workdir, "detections.png"))
    writer.write_scalars(step, {k: v for k, v in metrics.items() if isinstance(v, float)})
    _write_metrics_json(workdir, metrics)
    return metrics

  if mode == "eval":
    return evaluate(int(jax.device_get(state.step)))

  start = int(jax.device_get(state.step))
  total = config.num_train_steps
  train_step = make_train_step(model, tx, prior_boxes, lr_fn, config, mesh)
  batches = pipeline.train_iterator(
      train_source, image_size=model.image_size, batch_size=config.batch_size,
      max_boxes=config.data.max_boxes, seed=config.seed,
      augment=config.augment, start_step=start)
  preempted = _Preempted()
  last_metrics: dict[str, Any] = {}
  pending, tick, tick_step = [], time.perf_counter(), start
  try:
    for step in range(start + 1, total + 1):
      state, metrics = train_step(state, global_batch(next(batches), mesh))
      pending.append(metrics)
      if step % config.log_every_steps == 0 or step == total:
        _check_finite(state, manager)
        means = jax.tree_util.tree_map(lambda *x: float(np.mean(x)), *jax.device_get(pending))
        now = time.perf_counter()
        ips = (step - tick_step) * config.batch_size / (now - tick)
        eta = (total - step) * (now - tick) / (step - tick_step)
        writer.write_scalars(step, {**{f"train/{k}": v for k, v in means.items()},
                                    "train/images_per_s": ips})
        logging.info("step %d/%d  loss %.4f (conf %.4f, loc %.4f)  lr %.2e  %.1f img/s  "
                     "ETA %.0f s", step, total, means["loss"], means["conf_loss"],
                     means["loc_loss"], means["lr"], ips, eta)
        pending, tick, tick_step = [], now, step
      if step % config.checkpoint.every_steps == 0 or step == total or preempted.requested:
        _check_finite(state, manager)
        manager.save(step, args=ocp.args.StandardSave(state), force=True)
      if preempted.requested:
        manager.wait_until_finished()
        logging.warning("Stopped at step %d after SIGTERM; rerun to resume.", step)
        sys.exit(128 + signal.SIGTERM)
      if mode == "train_and_eval" and (step % config.eval.every_steps == 0 or step == total):
        last_metrics = evaluate(step)
        best_manager.save(step, args=ocp.args.StandardSave(state),
                          metrics={config.checkpoint.best_metric:
                                   last_metrics[config.checkpoint.best_metric]}, force=True)
  finally:
    preempted.restore()
    manager.wait_until_finished()
    best_manager.wait_until_finished()
    writer.flush()
  if mode == "train_and_eval" and not last_metrics:
    last_metrics = evaluate(int(jax.device_get(state.step)))  # resumed at the end: still report
  multihost_utils.sync_global_devices("train_and_evaluate done")
  return last_metrics
