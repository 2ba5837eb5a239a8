"""An experiment config -> its parts: the one place that reads a config to build things.

``train.train_and_evaluate``, ``experiments/detect.py``, export, the sweeps, the benchmarks and
the tests get their model (with its priors and input size; a trained run's priors from its
workdir), data sources and label map, learning-rate schedule, optimizer, train step (also for
runs trained together: :data:`STACKABLE`), predict function and evaluator from here, so a config
field means the same thing on every path. The fields are documented in
``experiments/configs/common.py``; what is model-specific (backbone, default priors, pretrained
weights) comes from the registry ``ssd_jax.models.BACKBONES``, what is dataset-specific from
``ssd_jax.data.registry``. The priors policy (which layout a config gives, k-means fitting, a
run's stored layout and its check against the config) lives in ``ssd_jax.run_priors``, which this
module calls to build the model.
"""

import dataclasses
from typing import Any, Callable, Iterator, Optional, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from ssd_jax import checkpoints, evaluation, inference, models, overrides
from ssd_jax import run_priors, train_step
from ssd_jax import warm_start as warm_start_lib
from ssd_jax import priors as priors_lib
from ssd_jax.data import label_map as label_map_lib
from ssd_jax.data import pipeline, registry, sources

Config = ml_collections.ConfigDict
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


# ---------------------------------------------------------------------------------------------
# Model and priors.
# ---------------------------------------------------------------------------------------------
def image_size(config: Config) -> int:
  """Side of the model's square input, pixels (k-means priors keep it)."""
  return int(run_priors.rule_prior_spec(config).image_size)


def create_model(config: Config, num_classes: int,
                 spec: Optional[priors_lib.PriorSpec] = None) -> models.SSD:
  """The model of ``config`` with the prior layout ``spec`` (a run's: ``run_priors.fit_or_load``,
  ``run_priors.load``); None = ``run_priors.prior_spec``'s."""
  dtype = config.model.get("dtype", "float32")
  if dtype not in _DTYPES:
    raise ValueError(f"config.model.dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
  return models.create_model(config.model.name, num_classes, dtype=_DTYPES[dtype],
                             prior_spec=run_priors.prior_spec(config) if spec is None else spec,
                             conv_impl=config.model.get("conv_impl", "auto"))


def load_pretrained_backbone(config: Config, params: Any) -> Any:
  """``params`` with ``config.pretrained_backbone`` (a weights file) loaded by the model's
  registry entry (e.g. ImageNet VGG16 into conv1_1 .. fc7); the heads are untouched."""
  path = config.get("pretrained_backbone")
  if not path:
    return params
  entry = models.backbone_entry(config.model.name)
  if entry.load_pretrained is None:
    raise ValueError(f"config.pretrained_backbone is set, but model {config.model.name!r} has "
                     "no pretrained weights to load (models with them: "
                     f"{[n for n, e in models.BACKBONES.items() if e.load_pretrained]})")
  return entry.load_pretrained(path, {"params": params})["params"]


def warm_start(config: Config, params: Any, label_map: label_map_lib.LabelMap) -> Any:
  """The step-0 ``params`` of a fresh run: with ``config.pretrained_backbone`` (ImageNet weights)
  or ``config.init_from`` (another run's workdir, :mod:`ssd_jax.warm_start`) loaded, if set."""
  weights, run = config.get("pretrained_backbone"), config.get("init_from")
  if weights and run:
    raise ValueError("set config.pretrained_backbone or config.init_from, not both")
  if weights:
    return load_pretrained_backbone(config, params)
  if not run:
    return params
  stored, step = checkpoints.read_params(run)
  return warm_start_lib.transfer(params, label_map.class_names, stored,
                                 label_map_lib.load(run).class_names,
                                 where=f"config.init_from={run} (step {step})")


# ---------------------------------------------------------------------------------------------
# Data.
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Data:
  """The sources of a run. ``train`` is None when the label map came from a workdir (evaluation
  only); ``val`` is None when the config names no validation split."""
  label_map: label_map_lib.LabelMap
  eval: sources.Source
  train: Optional[sources.Source] = None
  val: Optional[sources.Source] = None


def create_data(config: Config, label_map: Optional[label_map_lib.LabelMap] = None,
                train: bool = True) -> Data:
  """The sources of ``config.data``; the label map is the training source's classes unless
  given (a trained run's), and ``train=False`` skips the training source."""
  train_source = registry.make_source(config.data, "train") if train else None
  if label_map is None:
    if train_source is None:
      raise ValueError("create_data: without the training source, pass the run's label map")
    label_map = label_map_lib.LabelMap.from_source(train_source)
  names = label_map.class_names
  return Data(label_map=label_map, train=train_source,
              val=registry.make_source(config.data, "val", names),
              eval=registry.make_source(config.data, "eval", names))


def train_batches(config: Config, source: sources.Source,
                  start_step: int = 0) -> Iterator[dict[str, np.ndarray]]:
  """This process's augmented training batches from step ``start_step + 1`` on."""
  return pipeline.train_iterator(source, image_size=image_size(config),
                                 batch_size=config.batch_size, max_boxes=config.data.max_boxes,
                                 seed=config.seed, augment=config.augment,
                                 start_step=start_step)


# ---------------------------------------------------------------------------------------------
# Run length: epochs -> steps.
# ---------------------------------------------------------------------------------------------
# (field in epochs, the field in steps it replaces when set): a run's length, evaluation and
# checkpoint periods and schedule can follow the dataset's size instead of fixed step counts.
EPOCH_FIELDS = (("num_epochs", "num_train_steps"), ("eval.every_epochs", "eval.every_steps"),
                ("checkpoint.every_epochs", "checkpoint.every_steps"),
                ("optimizer.warmup_epochs", "optimizer.warmup_steps"),
                ("optimizer.decay_epochs", "optimizer.decay_steps"))


def _get(config: Config, dotted: str) -> Any:
  *parents, leaf = dotted.split(".")
  for p in parents:
    config = config.get(p) or {}
  return config.get(leaf)


def in_steps(config: Config, num_train_examples: int) -> Config:
  """``config`` with every ``*_epochs`` field of :data:`EPOCH_FIELDS` that is set (not None)
  written into its ``*_steps`` field, ``round(epochs * num_train_examples / batch_size)`` steps
  (at least 1, except a warm-up of 0 epochs); ``config`` itself is not changed. Idempotent.
  """
  steps_per_epoch = num_train_examples / config.batch_size
  to_steps = lambda epochs: max(1, round(float(epochs) * steps_per_epoch))
  changes = {}
  for epochs_field, steps_field in EPOCH_FIELDS:
    epochs = _get(config, epochs_field)
    if epochs is None:
      continue
    if isinstance(epochs, (tuple, list)):
      steps = tuple(to_steps(e) for e in epochs)
    elif float(epochs) < 0 or (float(epochs) == 0 and steps_field != "optimizer.warmup_steps"):
      raise ValueError(f"config.{epochs_field} must be > 0 (or None to use "
                       f"config.{steps_field}), got {epochs}")
    else:
      steps = to_steps(epochs) if float(epochs) > 0 else 0
    changes[steps_field] = steps
  return overrides.apply_overrides(config, changes)


# ---------------------------------------------------------------------------------------------
# Optimization.
# ---------------------------------------------------------------------------------------------
SCHEDULES = ("piecewise", "cosine")


def create_learning_rate_fn(config: Config) -> optax.Schedule:
  """Linear warm-up to ``optimizer.lr`` over ``warmup_steps``, then ``optimizer.schedule``:
  ``'piecewise'`` (the paper: x ``decay_factor`` at each of ``decay_steps``) or ``'cosine'``
  (to 0 at ``num_train_steps``; needs no decay steps, so it suits runs sized in epochs)."""
  opt = config.optimizer
  warmup = int(opt.get("warmup_steps", 0))
  kind = opt.get("schedule", "piecewise")
  if kind == "piecewise":
    boundaries = {int(s): opt.decay_factor for s in opt.get("decay_steps", ())}
    main = optax.piecewise_constant_schedule(opt.lr, boundaries)
  elif kind == "cosine":
    decay = optax.cosine_decay_schedule(opt.lr, max(1, config.num_train_steps - warmup))
    main = lambda step: decay(step - warmup)
  else:
    raise ValueError(f"config.optimizer.schedule must be one of {SCHEDULES}, got {kind!r}")
  if warmup == 0:
    return main
  ramp = optax.linear_schedule(opt.lr * opt.get("warmup_factor", 0.1), opt.lr, warmup)
  return lambda step: jnp.where(step < warmup, ramp(step), main(step))


def frozen_layers(config: Config) -> tuple[str, ...]:
  """``config.freeze_layers``: layers kept at their loaded values (Caffe SSD's ``freeze_layers``:
  no gradient, no update, no weight decay). Freezing keeps what was loaded, so it needs
  ``pretrained_backbone`` or ``init_from``: frozen random layers would never learn."""
  layers = tuple(config.get("freeze_layers", ()))
  if layers and not (config.get("pretrained_backbone") or config.get("init_from")):
    raise ValueError(f"config.freeze_layers={layers} keeps those layers at their initial values, "
                     "but nothing is loaded into them: set config.pretrained_backbone (or "
                     "config.init_from), or --config.freeze_layers=() to train every layer")
  return layers


def create_optimizer(config: Config, lr_fn: optax.Schedule) -> optax.GradientTransformation:
  """SGD with momentum (the paper) or Adam(W); L2 weight decay on kernels only (as Caffe's
  ``decay_mult: 0`` on biases); optional global-norm gradient clipping; the layers of
  :func:`frozen_layers` left unchanged (and without optimizer state)."""
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
  return train_step.freeze(optax.chain(*parts), frozen_layers(config))


def create_mesh() -> jax.sharding.Mesh:
  """All devices of all processes on one ``'data'`` axis."""
  return jax.make_mesh((jax.device_count(),), ("data",))


def create_train_step(config: Config, model: models.SSD, tx: optax.GradientTransformation,
                      lr_fn: optax.Schedule, mesh: jax.sharding.Mesh) -> Callable:
  """``(state, batch) -> (state, metrics)`` with ``config.matching`` and ``config.loss``."""
  if config.batch_size % mesh.devices.size:
    raise ValueError(f"config.batch_size={config.batch_size} must be divisible by the "
                     f"{mesh.devices.size} devices")
  return train_step.make_train_step(model, tx, priors_lib.generate(model.prior_spec), lr_fn,
                                    targets_and_loss(config), mesh, frozen_layers(config))


def targets_and_loss(config: Config) -> train_step.TargetsAndLoss:
  """``config.matching`` and ``config.loss`` as the train step takes them."""
  m, loss = config.matching, config.loss
  return train_step.TargetsAndLoss(
      iou_threshold=m.iou_threshold, variances=tuple(m.variances), mode=m.mode,
      neg_pos_ratio=loss.neg_pos_ratio, alpha=loss.alpha)


# Config fields in which runs trained together may differ (train.train_stacked): none changes a
# parameter or batch shape (k-means priors keep the count of the layout they replace); each
# becomes a per-run value of the one compiled step.
STACKABLE = ("seed", "priors.s_min", "priors.s_max", "priors.first_scale", "priors.kmeans",
             "matching.iou_threshold", "loss.neg_pos_ratio", "loss.alpha", "optimizer.lr")


def unstackable_differences(a: Config, b: Config) -> list[str]:
  """The dotted keys where two configs differ outside :data:`STACKABLE` (and its sub-fields)."""
  return [k for k in overrides.config_differences(a, b)
          if not any(k == f or k.startswith(f + ".") for f in STACKABLE)]


def check_stackable(configs: Sequence[Config]) -> None:
  """Raises ValueError unless the configs differ only in :data:`STACKABLE` fields."""
  if not configs:
    raise ValueError("no configs to train together")
  for i, other in enumerate(configs[1:], 1):
    differ = unstackable_differences(configs[0], other)
    if differ:
      raise ValueError(f"configs 0 and {i} cannot train together: they differ in "
                       f"{', '.join(differ[:8])} (runs trained together may differ only in "
                       f"{', '.join(STACKABLE)})")


def create_stacked_train_step(trainings: Sequence["Training"], mesh: jax.sharding.Mesh
                              ) -> tuple[Callable, bool]:
  """``((states, batch) -> (states, metrics), shared_batch)`` for runs trained together (stacked
  states, :func:`train_step.make_stacked_train_step`): the first run's model and optimizer, every
  run's priors, matching threshold, loss settings and learning rate (as a multiple of the
  first's). ``shared_batch``: the runs share their seed, hence their batches, so one batch feeds
  them all; otherwise the batch is ``[R, B, ...]``, each run's own."""
  configs = [t.config for t in trainings]
  check_stackable(configs)
  first = trainings[0]
  lr = first.config.optimizer.lr
  if not lr and any(c.optimizer.lr for c in configs):
    raise ValueError("runs trained together scale the first run's learning rate, which is 0")
  runs = [train_step.run_settings(priors_lib.generate(t.model.prior_spec), targets_and_loss(c),
                                  lr_scale=c.optimizer.lr / lr if lr else 1.0)
          for t, c in zip(trainings, configs)]
  runs = train_step.stack(runs)  # float32 leaves with a leading run axis
  shared = len({c.seed for c in configs}) == 1
  step = train_step.make_stacked_train_step(first.model, first.tx, first.lr_fn,
                                            targets_and_loss(first.config), mesh, shared,
                                            frozen_layers(first.config))
  return (lambda states, batch: step(states, batch, runs)), shared


@dataclasses.dataclass(frozen=True)
class Training:
  """What a training run is made of (:func:`create_training`); ``config`` is the run's config
  with its ``*_epochs`` fields in steps (:func:`in_steps`), ``priors`` the model's layout (to
  save in the workdir)."""
  config: Config
  data: Data
  priors: run_priors.RunPriors
  model: models.SSD
  lr_fn: optax.Schedule
  tx: optax.GradientTransformation
  step_fn: Callable  # (state, batch) -> (state, metrics)

  def initial_state(self, config: Config, mesh: jax.sharding.Mesh,
                    load_weights: bool = False) -> train_step.TrainState:
    """The step-0 state (``config.seed``), replicated over ``mesh``; with ``load_weights``, its
    params with ``config.pretrained_backbone`` or ``config.init_from`` loaded when either is set
    (:func:`warm_start`: the start of a fresh run; a resumed one restores its checkpoint)."""
    state = train_step.create_train_state(self.model, self.tx, config.seed, mesh)
    if not (load_weights and (config.get("pretrained_backbone") or config.get("init_from"))):
      return state
    params = warm_start(config, jax.device_get(state.params), self.data.label_map)
    return state.replace(params=jax.device_put(params, jax.sharding.NamedSharding(
        mesh, jax.sharding.PartitionSpec())))


def create_training(config: Config, mesh: jax.sharding.Mesh,
                    workdir: Optional[str] = None) -> Training:
  """The data, priors, model, schedule, optimizer and train step of ``config``; the priors are
  those of ``workdir``'s ``priors.json`` when it has one (``run_priors.fit_or_load``)."""
  data = create_data(config)
  config = in_steps(config, data.train.num_examples)
  priors = run_priors.fit_or_load(config, data.train, workdir)
  model = create_model(config, data.label_map.num_classes, priors.spec)
  lr_fn = create_learning_rate_fn(config)
  tx = create_optimizer(config, lr_fn)
  return Training(config=config, data=data, priors=priors, model=model, lr_fn=lr_fn, tx=tx,
                  step_fn=create_train_step(config, model, tx, lr_fn, mesh))


# ---------------------------------------------------------------------------------------------
# Prediction and evaluation.
# ---------------------------------------------------------------------------------------------
def decode_settings(config: Config,
                    score_threshold: Optional[float] = None) -> inference.DecodeSettings:
  """``config.eval``'s NMS settings and the variances the targets were encoded with."""
  e = config.eval
  return inference.DecodeSettings(
      score_threshold=e.score_threshold if score_threshold is None else score_threshold,
      iou_threshold=e.nms_iou_threshold, pre_nms_top_k=e.pre_nms_top_k,
      max_detections=e.max_detections, variances=tuple(config.matching.variances))


def create_predict_fn(config: Config, model: models.SSD, mesh: jax.sharding.Mesh,
                      score_threshold: Optional[float] = None) -> Callable:
  """``(params, images uint8 [B, S, S, 3]) -> detections`` (``inference.predict``)."""
  return inference.make_predict_fn(model, priors_lib.generate(model.prior_spec),
                                   decode_settings(config, score_threshold), mesh)


def round_to_devices(batch_size: int, mesh: jax.sharding.Mesh) -> int:
  """``batch_size`` rounded up to a multiple of the device count (padding rows are ignored)."""
  n = mesh.devices.size
  return -(-batch_size // n) * n


def create_evaluators(config: Config, model: models.SSD, data: Data, mesh: jax.sharding.Mesh
                      ) -> tuple[Optional[evaluation.Evaluator], evaluation.Evaluator]:
  """``(validation evaluator or None, eval evaluator)`` sharing one compiled predict function."""
  e = config.eval
  predict_fn = create_predict_fn(config, model, mesh)
  make = lambda source, draw: evaluation.Evaluator(
      predict_fn=predict_fn, source=source, class_names=data.label_map.class_names,
      image_size=model.image_size, batch_size=round_to_devices(e.batch_size, mesh),
      max_boxes=config.data.max_boxes, metrics=tuple(e.metrics), mesh=mesh,
      num_images_to_draw=draw, draw_score_threshold=e.draw_score_threshold,
      priors=priors_lib.generate(model.prior_spec),
      match_threshold=config.matching.iou_threshold)
  return (None if data.val is None else make(data.val, 0)), make(data.eval, e.num_images_to_draw)


# ---------------------------------------------------------------------------------------------
# A trained run.
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class TrainedRun:
  """A run's model with restored parameters and its label map, read from its workdir."""
  config: Config
  model: models.SSD
  params: Any  # Replicated over ``mesh``.
  label_map: label_map_lib.LabelMap
  mesh: jax.sharding.Mesh
  step: int
  checkpoint_dir: str

  @property
  def priors(self) -> np.ndarray:
    """``[P, 4]`` normalized cxcywh."""
    return priors_lib.generate(self.model.prior_spec)


def load_trained_run(config: Config, workdir: str, step: Optional[int] = None,
                     best: bool = False) -> TrainedRun:
  """The run in ``workdir`` trained with ``config`` (the same overrides): its label map, its
  prior layout (``run_priors.load``) and the params of checkpoint ``step`` (None = the
  latest; ``best``: of ``checkpoints_best/``).

  Raises:
    FileNotFoundError: ``workdir`` is not a run's, holds no checkpoint, or lacks the k-means
      priors the config names.
    ValueError: ``step`` is not saved, or the checkpoint or the stored priors do not fit the
      config's model.
  """
  label_map = label_map_lib.load(workdir)
  model = create_model(config, label_map.num_classes, run_priors.load(config, workdir))
  mesh = create_mesh()
  params, step, directory = checkpoints.restore_params(workdir, model, mesh, step=step,
                                                       best=best)
  return TrainedRun(config=config, model=model, params=params, label_map=label_map, mesh=mesh,
                    step=step, checkpoint_dir=directory)
