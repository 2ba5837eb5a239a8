"""The SSD train step: targets, multibox loss and the optimizer update, data-parallel.

The step is written for one device (:func:`train_step`) with collectives over the ``'data'`` mesh
axis and run with ``jax.shard_map`` over all devices of all processes (:func:`make_train_step`).
The multibox loss is normalized by the positives of the *global* batch and gradients are summed
over devices, so any device count gives the single-device result (up to float summation order).
Everything here takes arrays and plain values; :mod:`ssd_jax.experiment` fills them in from a
config.
"""

import dataclasses
import functools
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ssd_jax import losses, matching, models

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


def train_step(state: TrainState, batch: dict[str, jnp.ndarray], *, model: models.SSD,
               tx: optax.GradientTransformation, priors: jnp.ndarray, lr_fn: optax.Schedule,
               settings: TargetsAndLoss) -> tuple[TrainState, dict[str, jnp.ndarray]]:
  """One optimizer step on this device's part of the batch; collectives over ``'data'``.

  ``batch``: ``image`` uint8 ``[b, S, S, 3]``, ``boxes`` ``[b, G, 4]`` normalized xyxy,
  ``labels`` ``[b, G]`` (0 = padding) and ``crowd`` ``[b, G]`` (crowd boxes are ignored: no prior
  is positive or negative because of one).
  """
  targets_fn = functools.partial(matching.encode_targets, priors=priors,
                                 iou_threshold=settings.iou_threshold,
                                 variances=settings.variances, mode=settings.mode)
  loc_t, cls_t = jax.vmap(targets_fn)(batch["boxes"], batch["labels"], crowd=batch["crowd"])

  def loss_fn(params):
    loc, logits = model.apply({"params": params}, batch["image"].astype(jnp.float32), train=True)
    return losses.multibox_loss(loc, logits, loc_t, cls_t, neg_pos_ratio=settings.neg_pos_ratio,
                                alpha=settings.alpha, axis_name="data")

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
  # A non-finite step leaves params untouched; the host stops at its next check.
  keep = lambda new, old: jax.tree_util.tree_map(lambda n, o: jnp.where(ok, n, o), new, old)
  new_state = TrainState(
      step=state.step + 1, params=keep(params, state.params),
      opt_state=keep(opt_state, state.opt_state),
      first_bad_step=jnp.where(ok | (state.first_bad_step >= 0), state.first_bad_step,
                               state.step + 1))  # 1-based, as logged
  metrics = {"loss": loss, **aux, "grad_norm": grad_norm, "lr": lr_fn(state.step)}
  return new_state, metrics


def make_train_step(model: models.SSD, tx: optax.GradientTransformation, priors: np.ndarray,
                    lr_fn: optax.Schedule, settings: TargetsAndLoss,
                    mesh: jax.sharding.Mesh) -> Callable:
  """``(state, batch) -> (state, metrics)``: jitted, state replicated and donated, batch sharded
  on ``'data'``."""
  step = functools.partial(train_step, model=model, tx=tx, priors=jnp.asarray(priors),
                           lr_fn=lr_fn, settings=settings)
  sharded = jax.shard_map(step, mesh=mesh, in_specs=(P(), P("data")), out_specs=(P(), P()))
  return jax.jit(sharded, donate_argnums=0)


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


def global_batch(batch: dict[str, np.ndarray], mesh: jax.sharding.Mesh) -> dict[str, jax.Array]:
  """This process's part of the batch -> global arrays sharded on ``'data'``."""
  sharding = jax.sharding.NamedSharding(mesh, P("data"))
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}
