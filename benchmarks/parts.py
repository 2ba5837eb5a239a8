"""What the benchmarks time, built by ``ssd_jax.experiment`` from a config: the code users run.

A benchmark of the model, the train step or prediction gets its parts here, never a copy:
  :func:`config`           the model's own experiment config (``ssd_tiny``: the synthetic one;
                           SSD300/SSD512: the paper's VOC recipe) with the model, batch, dtype,
                           convolution implementation and frozen layers set, reading the
                           built-in synthetic shapes at the model's input size (or a VOC folder)
                           instead of a dataset that would have to be downloaded;
  :func:`first_batch`      the config's first training batch, from its input pipeline and
                           augmentation: the inputs of every timed function;
  :func:`compiled`         ``forward``, ``targets``, ``train`` and ``detect`` compiled from
                           ``experiment.create_training`` and ``experiment.create_predict_fn``,
                           as calls that block until done;
  :func:`write_run`        a run folder as training writes it, for the paths that start from a
                           trained run (export, ``init_from``; :func:`with_weights`).
"""

import copy
import dataclasses
import time
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from benchmarks import common
from experiments.configs import common as configs_common
from experiments.configs import own_data, ssd300_voc0712, ssd512_voc0712, synthetic
from ssd_jax import experiment, losses, overrides, priors, train, train_step

Config = ml_collections.ConfigDict
# Each model's own recipe: what a user trains it with.
_MODEL_CONFIGS = {"ssd_tiny": synthetic, "ssd300_vgg16": ssd300_voc0712,
                  "ssd512_vgg16": ssd512_voc0712}
FUNCTIONS = ("forward", "targets", "train", "detect")


def config(model: str, batch: int, dtype: str = "float32", conv_impl: Optional[str] = None,
           freeze: bool = False, base: Optional[Config] = None, voc_root: str = "") -> Config:
  """The config a benchmark builds its parts from.

  ``base`` (default: the model's own recipe, :data:`_MODEL_CONFIGS`) with ``model``, the global
  ``batch``, ``dtype`` and ``conv_impl`` (None: the base's) set; its data replaced by the
  synthetic shapes generated at the model's input side (no resize hidden in the figures), with
  the base's ``max_boxes`` (the padding the matching works through), or with ``voc_root`` by
  that folder of one's own photos read as ``own_data`` reads it (any layout it recognizes; the
  same ``max_boxes``). ``freeze``: the layers the
  paper recipes keep at their ImageNet values (``VGG16_FROZEN_LAYERS``) are frozen, which needs
  ``init_from`` (:func:`write_run`); otherwise every layer trains, as on one's own data.
  """
  c = copy.deepcopy(base if base is not None else _MODEL_CONFIGS[model].get_config())
  with c.unlocked():
    c.model.name = model
    c.batch_size = batch
    c.model.dtype = dtype
    if conv_impl:
      c.model.conv_impl = conv_impl
    c.freeze_layers = configs_common.VGG16_FROZEN_LAYERS if freeze else ()
    data = own_data.get_config().data if voc_root else synthetic.get_config().data
    if voc_root:
      data.root = voc_root
    else:
      data.synthetic.image_size = experiment.image_size(c)
    data.max_boxes = c.data.max_boxes
    c.data = data
  return c


def first_batch(cfg: Config) -> dict[str, np.ndarray]:
  """The first training batch of ``cfg``'s data through its input pipeline (augmentation
  included): uint8 ``image [B, S, S, 3]``, ``boxes [B, G, 4]`` normalized xyxy, ``labels [B, G]``
  (0 = padding), ... as ``ssd_jax.data.pipeline`` documents them."""
  batches = experiment.train_batches(cfg, experiment.create_data(cfg).train)
  try:
    return next(batches)
  finally:
    batches.close()


def write_run(cfg: Config, workdir: str) -> None:
  """A run of ``cfg`` in ``workdir`` after one training step (``train.train_and_evaluate``,
  ``mode='train'``): label map, priors and checkpoint, as every trained run has them. Its weights
  are as good as random, which changes nothing that is timed."""
  one_step = overrides.apply_overrides(cfg, {
      "num_train_steps": 1, "log_every_steps": 1, "checkpoint.every_steps": 1,
      "freeze_layers": (), "init_from": "", "pretrained_backbone": ""})
  train.train_and_evaluate(one_step, workdir, mode="train")


def with_weights(cfg: Config, workdir: str) -> Config:
  """``cfg``, and with frozen layers (``freeze_layers``) also ``init_from`` a run written to
  ``workdir`` (:func:`write_run`): freezing keeps loaded weights, so a config needs some."""
  if not cfg.get("freeze_layers") or cfg.get("init_from") or cfg.get("pretrained_backbone"):
    return cfg
  write_run(cfg, workdir)
  return overrides.apply_overrides(cfg, {"init_from": workdir})


@dataclasses.dataclass
class Compiled:
  """``calls[name]()`` runs function ``name`` once on the batch and returns when it is done;
  ``facts``: image size, prior and parameter counts and each function's compile seconds
  (``NAME_compile_s``)."""
  calls: dict[str, Callable[[], Any]]
  facts: dict[str, Any]


def compiled(cfg: Config, host_batch: dict[str, np.ndarray],
             names: Sequence[str] = FUNCTIONS, hlo_dir: str = "") -> Compiled:
  """Compiles the functions ``names`` of :data:`FUNCTIONS` for ``cfg`` on ``host_batch``:

    forward  the model (``model.apply``) on the batch's images;
    targets  the train step's matching targets (``train_step.batch_targets``) and multibox loss
             of the model's predictions for the batch;
    train    ``experiment.create_training``'s step: distortion, targets, loss, gradient, update;
    detect   ``experiment.create_predict_fn``: forward, decoding and per-class NMS.

  The train step donates its state; the calls keep the newest, and every call reads the current
  parameters. ``hlo_dir``: each function's optimized HLO is written there
  (``common.dump_hlo``).
  """
  mesh = experiment.create_mesh()
  training = experiment.create_training(cfg, mesh)
  model, run_cfg = training.model, training.config
  state = training.initial_state(run_cfg, mesh, load_weights=True)  # as a fresh run starts
  batch = train_step.global_batch(host_batch, mesh)
  images = batch["image"]
  # forward and targets run where jit puts them (one device), on the batch unsharded.
  local = jax.device_put(host_batch)
  settings = experiment.targets_and_loss(run_cfg)
  prior_boxes = priors.generate(model.prior_spec)
  run = train_step.run_settings(prior_boxes, settings)

  def forward(params, images):
    return model.apply({"params": params}, images.astype(jnp.float32))

  def targets(batch, loc, logits):
    loc_t, cls_t = train_step.batch_targets(batch, run, variances=settings.variances,
                                            mode=settings.mode)
    return losses.multibox_loss(loc, logits, loc_t, cls_t, neg_pos_ratio=settings.neg_pos_ratio,
                                alpha=settings.alpha)[0]

  predict = experiment.create_predict_fn(run_cfg, model, mesh)
  holder = {"state": state}  # the newest state: the train step donates the one it is given
  params_and = lambda images: lambda: (holder["state"].params, images)
  predictions = ()
  if "targets" in names:  # the model's predictions for the batch, the input of the targets
    # (its own jit: the timed forward's compile time is then its own)
    predictions = (local, *jax.jit(lambda *a: forward(*a))(*params_and(local["image"])()))
  jitted = {"forward": (jax.jit(forward), params_and(local["image"])),
            "targets": (jax.jit(targets), lambda: predictions),
            "train": (training.step_fn, lambda: (holder["state"], batch)),
            "detect": (predict, params_and(images))}
  facts = {"model": cfg.model.name, "batch": cfg.batch_size, "dtype": cfg.model.dtype,
           "conv_impl": cfg.model.conv_impl, "image_size": model.image_size,
           "num_priors": len(prior_boxes),
           "num_params": sum(int(x.size) for x in jax.tree.leaves(state.params))}
  calls = {}
  for name in names:
    fn, args = jitted[name]
    start = time.perf_counter()
    executable = fn.lower(*args()).compile()
    facts[f"{name}_compile_s"] = time.perf_counter() - start
    common.dump_hlo(executable, hlo_dir,
                    f"{cfg.model.name}_{name}_{cfg.model.dtype}_b{cfg.batch_size}")
    if name == "train":
      def call(executable=executable):
        holder["state"], metrics = executable(holder["state"], batch)
        return jax.block_until_ready(metrics)
    else:
      call = lambda executable=executable, args=args: jax.block_until_ready(executable(*args()))
    calls[name] = call
  return Compiled(calls=calls, facts=facts)


def run_steps(step_fn: Callable, state: Any, batch_fn: Callable[[], Any], num_steps: int,
              fetch_every: int = 0) -> Any:
  """Runs ``num_steps`` steps ``(state, batch) -> (state, metrics)`` on ``batch_fn()`` batches,
  fetching the metrics every ``fetch_every`` steps (0: never) as the trainer's logging does;
  returns the state once the last step has finished."""
  pending = []
  for i in range(1, num_steps + 1):
    state, metrics = step_fn(state, batch_fn())
    pending.append(metrics)
    if fetch_every and i % fetch_every == 0:
      jax.device_get(pending)
      pending = []
  return jax.block_until_ready(state)
