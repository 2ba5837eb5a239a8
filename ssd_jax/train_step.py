"""The SSD train step: targets, multibox loss and the optimizer update, data-parallel.

The step is written for one device (:func:`train_step`) with collectives over the ``'data'`` mesh
axis and run with ``jax.shard_map`` over all devices of all processes (:func:`make_train_step`).
The multibox loss is normalized by the positives of the *global* batch and gradients are summed
over devices, so any device count gives the single-device result (up to float summation order).
Everything here takes arrays and plain values; :mod:`ssd_jax.experiment` fills them in from a
config.

Runs whose parameter and batch shapes agree can train together (:func:`make_stacked_train_step`):
their states are stacked on a leading run axis and the step is ``jax.vmap``-ed over it, with what
may differ between them (:class:`RunSettings`: the priors' values, the matching threshold, the
loss settings and the learning rate) as per-run arrays.
"""

import dataclasses
import functools
from typing import Any, Callable, Sequence

import flax
import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ssd_jax import losses, matching, models, photometric

P = jax.sharding.PartitionSpec


@flax.struct.dataclass
class TrainState:
  """Everything a checkpoint holds. ``first_bad_step`` is -1 until a loss is non-finite."""
  step: jnp.ndarray
  params: Any
  opt_state: Any
  first_bad_step: jnp.ndarray


@dataclasses.dataclass(frozen=True)
class TargetsAndLoss:
  """The matching and loss settings of ``config.matching`` / ``config.loss``."""
  iou_threshold: float = 0.5
  variances: tuple[float, float] = (0.1, 0.2)
  mode: str = "per_gt"
  neg_pos_ratio: float = 3.0
  alpha: float = 1.0


@flax.struct.dataclass
class RunSettings:
  """A run's values that may differ between runs trained together: scalars or arrays, each with
  a leading run axis when stacked.

  Attributes:
    priors: ``[P, 4]`` normalized cxcywh.
    iou_threshold: ``TargetsAndLoss.iou_threshold``.
    neg_pos_ratio: ``TargetsAndLoss.neg_pos_ratio``.
    alpha: ``TargetsAndLoss.alpha``.
    lr_scale: this run's learning rate over the one ``lr_fn`` and ``tx`` were built with (an
      update is linear in the learning rate: warm-up, decay, SGD with momentum and AdamW with
      decoupled weight decay all scale with it); None: 1, the run's own optimizer.
  """
  priors: Any
  iou_threshold: Any
  neg_pos_ratio: Any
  alpha: Any
  lr_scale: Any = None


def run_settings(priors: np.ndarray, settings: TargetsAndLoss,
                 lr_scale: float | None = None) -> RunSettings:
  return RunSettings(priors=jnp.asarray(priors), iou_threshold=settings.iou_threshold,
                     neg_pos_ratio=settings.neg_pos_ratio, alpha=settings.alpha,
                     lr_scale=lr_scale)


def frozen_mask(params: Any, layers: Sequence[str]) -> Any:
  """A bool pytree like ``params``: True for the leaves of the named ``layers`` (a name matches
  a module anywhere on a leaf's path: ``'conv1_1'`` is ``backbone/conv1_1/{kernel,bias}``).

  Raises:
    ValueError: a name that is no module of ``params`` (a typo would otherwise train it).
  """
  flat = flax.traverse_util.flatten_dict(params)
  modules = {name for path in flat for name in path[:-1]}
  unknown = [name for name in layers if name not in modules]
  if unknown:
    raise ValueError(f"freeze_layers: {unknown} are not layers of the model; its layers: "
                     f"{sorted(modules)}")
  return flax.traverse_util.unflatten_dict(
      {path: any(name in layers for name in path[:-1]) for path in flat})


def stop_frozen_gradients(params: Any, frozen: Any) -> Any:
  """``params`` with the leaves where the bool tree ``frozen`` (:func:`frozen_mask`) is True made
  constants to autodiff: JAX then builds no backward pass for those layers (nor the input
  gradient of the first layer after them), which is what freezing saves."""
  return jax.tree_util.tree_map(lambda p, f: jax.lax.stop_gradient(p) if f else p, params,
                                frozen)


def freeze(tx: optax.GradientTransformation,
           layers: Sequence[str]) -> optax.GradientTransformation:
  """``tx`` on every parameter but those of ``layers`` (:func:`frozen_mask`), which it leaves
  unchanged and keeps no state for (no momentum, no weight decay)."""
  if not layers:
    return tx
  labels = lambda params: jax.tree_util.tree_map(lambda f: "frozen" if f else "trained",
                                                 frozen_mask(params, layers))
  return optax.multi_transform({"trained": tx, "frozen": optax.set_to_zero()}, labels)


def batch_targets(batch: dict[str, jnp.ndarray], run: RunSettings, *,
                  variances: tuple[float, float], mode: str) -> tuple[jnp.ndarray, jnp.ndarray]:
  """The matching targets of a batch (``matching.encode_targets`` per image, vectorized): loc
  ``[b, P, 4]`` and classes ``[b, P]`` of ``batch``'s ``boxes``, ``labels`` and ``crowd``."""
  targets_fn = functools.partial(matching.encode_targets, priors=run.priors,
                                 iou_threshold=run.iou_threshold, variances=variances, mode=mode)
  return jax.vmap(targets_fn)(batch["boxes"], batch["labels"], crowd=batch["crowd"])


def train_step(state: TrainState, batch: dict[str, jnp.ndarray], run: RunSettings, *,
               model: models.SSD, tx: optax.GradientTransformation, lr_fn: optax.Schedule,
               variances: tuple[float, float], mode: str, frozen_layers: Sequence[str] = ()
               ) -> tuple[TrainState, dict[str, jnp.ndarray]]:
  """One optimizer step on this device's part of the batch; collectives over ``'data'``.

  ``batch``: ``image`` uint8 ``[b, S, S, 3]``, ``boxes`` ``[b, G, 4]`` normalized xyxy,
  ``labels`` ``[b, G]`` (0 = padding) and ``crowd`` ``[b, G]`` (crowd boxes are ignored: no prior
  is positive or negative because of one); with ``photometric`` ``[b, K]`` and ``footprint``
  ``[b, 4]``, the images are distorted first (:func:`ssd_jax.photometric.distort`).
  ``variances`` and ``mode``: ``TargetsAndLoss``'s. ``frozen_layers`` (:func:`frozen_mask`) get a
  zero gradient; ``tx`` must leave them unchanged (``experiment.create_optimizer`` does).
  """
  loc_t, cls_t = batch_targets(batch, run, variances=variances, mode=mode)
  images = batch["image"].astype(jnp.float32)
  if "photometric" in batch:
    images = photometric.distort(images, batch["photometric"], batch["footprint"])

  frozen = frozen_mask(state.params, frozen_layers)

  def loss_fn(params):
    params = stop_frozen_gradients(params, frozen)
    loc, logits = model.apply({"params": params}, images, train=True)
    return losses.multibox_loss(loc, logits, loc_t, cls_t, neg_pos_ratio=run.neg_pos_ratio,
                                alpha=run.alpha, axis_name="data")

  (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  # Each device's loss is already divided by the global positives: sum, do not average. The
  # gradients need no collective: the replicated params enter this per-device loss through an
  # implicit broadcast over 'data' (shard_map's varying-axis types), whose transpose is a psum,
  # so autodiff returns them already summed over devices (and replicated).
  loss, aux = jax.lax.psum((loss, aux), "data")
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  lr = lr_fn(state.step)
  if run.lr_scale is not None:
    updates = jax.tree_util.tree_map(lambda u: u * run.lr_scale, updates)
    lr = lr * run.lr_scale
  params = optax.apply_updates(state.params, updates)
  grad_norm = optax.tree.norm(grads)
  ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & jnp.isfinite(optax.tree.norm(updates))
  # A non-finite step leaves params untouched; the host stops at its next check.
  keep = lambda new, old: jax.tree_util.tree_map(lambda n, o: jnp.where(ok, n, o), new, old)
  new_state = TrainState(
      step=state.step + 1, params=keep(params, state.params),
      opt_state=keep(opt_state, state.opt_state),
      first_bad_step=jnp.where(ok | (state.first_bad_step >= 0), state.first_bad_step,
                               state.step + 1))  # 1-based, as logged
  metrics = {"loss": loss, **aux, "grad_norm": grad_norm, "lr": lr}
  return new_state, metrics


def make_train_step(model: models.SSD, tx: optax.GradientTransformation, priors: np.ndarray,
                    lr_fn: optax.Schedule, settings: TargetsAndLoss,
                    mesh: jax.sharding.Mesh, frozen_layers: Sequence[str] = ()) -> Callable:
  """``(state, batch) -> (state, metrics)``: jitted, state replicated and donated, batch sharded
  on ``'data'``."""
  step = functools.partial(train_step, run=run_settings(priors, settings), model=model, tx=tx,
                           lr_fn=lr_fn, variances=settings.variances, mode=settings.mode,
                           frozen_layers=tuple(frozen_layers))
  sharded = jax.shard_map(step, mesh=mesh, in_specs=(P(), P("data")), out_specs=(P(), P()))
  return jax.jit(sharded, donate_argnums=0)


def make_stacked_train_step(model: models.SSD, tx: optax.GradientTransformation,
                            lr_fn: optax.Schedule, settings: TargetsAndLoss,
                            mesh: jax.sharding.Mesh, shared_batch: bool,
                            frozen_layers: Sequence[str] = ()) -> Callable:
  """``(states, batch, runs) -> (states, metrics)`` for R runs trained together.

  ``states``: :class:`TrainState` with a leading run axis ``[R, ...]`` (:func:`stack`), replicated
  and donated; ``runs``: :class:`RunSettings` of ``[R, ...]`` arrays (``lr_scale`` set);
  ``batch``: one batch for all runs (``shared_batch``) or ``[R, B, ...]``, sharded on ``'data'``
  along ``B``. Only ``settings.variances`` and ``settings.mode`` are read (the rest is per run).
  Metrics come back ``[R]``.
  """
  step = functools.partial(train_step, model=model, tx=tx, lr_fn=lr_fn,
                           variances=settings.variances, mode=settings.mode,
                           frozen_layers=tuple(frozen_layers))
  stacked = jax.vmap(step, in_axes=(0, None if shared_batch else 0, 0))
  batch_spec = P("data") if shared_batch else P(None, "data")
  sharded = jax.shard_map(stacked, mesh=mesh, in_specs=(P(), batch_spec, P()),
                          out_specs=(P(), P()))
  return jax.jit(sharded, donate_argnums=0)


def stack(trees: list[Any]) -> Any:
  """Pytrees of equal structure -> one with a leading axis over them."""
  return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *trees)


def unstack(tree: Any, index: int) -> Any:
  """Entry ``index`` of a stacked pytree's leading axis."""
  return jax.tree_util.tree_map(lambda leaf: leaf[index], tree)


def init_params(model: models.SSD, seed: int) -> Any:
  """The model's initial ``params`` (not jitted: call it inside a jit)."""
  dummy = jnp.zeros((1, model.image_size, model.image_size, 3), jnp.float32)
  return model.init(jax.random.key(seed), dummy)["params"]


def create_train_state(model: models.SSD, tx: optax.GradientTransformation, seed: int,
                       mesh: jax.sharding.Mesh) -> TrainState:
  """Initial state, replicated over ``mesh``."""

  def init():
    params = init_params(model, seed)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                      first_bad_step=jnp.full((), -1, jnp.int32))

  replicated = jax.sharding.NamedSharding(mesh, P())
  # Runs once: XLA's backend optimizations would cost far more compile time than they save
  # (13 s vs 2.6 s for ssd_tiny on 2 CPU cores).
  return jax.jit(init, out_shardings=replicated,
                 compiler_options={"xla_backend_optimization_level": 0})()


def stack_batches(batches: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
  """Host batches of several runs -> one with a leading run axis ``[R, B, ...]``."""
  return {k: np.stack([b[k] for b in batches]) for k in batches[0]}


def global_batch(batch: dict[str, np.ndarray], mesh: jax.sharding.Mesh,
                 stacked: bool = False) -> dict[str, jax.Array]:
  """This process's part of the batch -> global arrays sharded on ``'data'`` (along the second
  axis of ``stacked`` ``[R, B, ...]`` batches)."""
  sharding = jax.sharding.NamedSharding(mesh, P(None, "data") if stacked else P("data"))
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}
