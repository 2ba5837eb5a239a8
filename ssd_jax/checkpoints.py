"""Orbax checkpoints of a run's workdir: the training managers and read-only restores.

``workdir/checkpoints/`` keeps the last ``checkpoint.keep`` train states; ``checkpoints_best/``
the best by ``checkpoint.best_metric`` on the validation split (only when the config names one:
selecting on the reported test split would inflate it).
"""

import os
from typing import Any, Optional

from absl import logging
import jax
import ml_collections
import orbax.checkpoint as ocp

from ssd_jax import models, train_step

P = jax.sharding.PartitionSpec
LAST, BEST = "checkpoints", "checkpoints_best"
# The metrics key under which checkpoints_best/ records each checkpoint's validation score.
SCORE = "score"


def _score(metrics: dict[str, float]) -> float:
  return metrics[SCORE]


def managers(workdir: str, config: ml_collections.ConfigDict, with_best: bool
             ) -> tuple[ocp.CheckpointManager, Optional[ocp.CheckpointManager]]:
  """The last ``checkpoint.keep`` states, and (``with_best``: a validation split exists) the best
  one by ``val_<checkpoint.best_metric>``, saved with ``metrics={SCORE: value}``."""
  # The handler named up front, not on the first save: a manager that has not saved yet (a
  # resumed run) reads the checkpoint's metadata only through it.
  last = ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), LAST),
                               item_handlers=ocp.StandardCheckpointHandler(),
                               options=ocp.CheckpointManagerOptions(
                                   max_to_keep=config.checkpoint.keep))
  if not with_best:
    return last, None
  best = ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), BEST),
                               item_handlers=ocp.StandardCheckpointHandler(),
                               options=ocp.CheckpointManagerOptions(
                                   max_to_keep=1, best_fn=_score, best_mode="max"))
  return last, best


def restore_latest(manager: ocp.CheckpointManager,
                   state: train_step.TrainState) -> train_step.TrainState:
  """The newest checkpoint of ``manager`` restored into the structure of ``state``, or ``state``
  itself when there is none.

  Raises:
    ValueError: the checkpoint holds another train state than this config's: a parameter of
      another shape (named), or an optimizer state of another structure (``optimizer.name``,
      ``grad_clip_norm``, ``freeze_layers``; orbax's own error, chained, names the difference).
  """
  step = manager.latest_step()
  if step is None:
    return state
  logging.info("Resuming from %s/%d", manager.directory, step)
  _check_shapes(state.params, manager.item_metadata(step).tree["params"],
                f"{manager.directory}/{step}")
  try:
    return manager.restore(step, args=ocp.args.StandardRestore(state))
  except ValueError as e:
    # Orbax says which leaf differs, not why; the usual cause is a changed config.
    raise ValueError(
        f"Cannot resume from {manager.directory}/{step}: the optimizer state stored there does "
        "not fit this config's (optimizer.name, optimizer.grad_clip_norm and freeze_layers "
        "shape it). A run resumes with the config it was trained with; to train other settings "
        "from its weights, start a new workdir with "
        f"--config.init_from={os.path.dirname(str(manager.directory))}.") from e


def abstract_params(model: models.SSD, mesh: jax.sharding.Mesh) -> Any:
  """Shapes, dtypes and (replicated) shardings of the model's params, without computing them."""
  shapes = jax.eval_shape(lambda: train_step.init_params(model, 0))
  replicated = jax.sharding.NamedSharding(mesh, P())
  return jax.tree_util.tree_map(
      lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated), shapes)


def _check_shapes(expected: Any, stored: Any, where: str) -> None:
  """Raises a ValueError naming the first parameter whose stored shape is not the model's."""
  flat_stored = {jax.tree_util.keystr(k): v for k, v in
                 jax.tree_util.tree_flatten_with_path(stored)[0]}
  for path, leaf in jax.tree_util.tree_flatten_with_path(expected)[0]:
    name = jax.tree_util.keystr(path)
    shape = tuple(flat_stored[name].shape) if name in flat_stored else None
    if shape != tuple(leaf.shape):
      raise ValueError(
          f"The checkpoint in {where} does not fit the model of this config: params{name} is "
          f"{'missing' if shape is None else f'stored as {shape}'}, the model has "
          f"{tuple(leaf.shape)}. Pass the config (and overrides) the run was trained with.")


def _open_read_only(workdir: str, best: bool) -> tuple[ocp.CheckpointManager, str]:
  """A read-only manager of the run's ``checkpoints/`` (``best``: ``checkpoints_best/``) and
  that folder; FileNotFoundError when there is no checkpoint to read."""
  folder = BEST if best else LAST
  directory = os.path.join(os.path.abspath(workdir), folder)
  if not os.path.isdir(workdir):
    raise FileNotFoundError(f"workdir {workdir} does not exist")
  if not os.path.isdir(directory) or not os.listdir(directory):
    hint = (" (written only by runs whose config names a validation split)" if best else
            " (train first: --mode=train or train_and_eval)")
    raise FileNotFoundError(f"workdir {workdir} has no checkpoint in {folder}/{hint}")
  manager = ocp.CheckpointManager(
      directory, item_handlers=ocp.PyTreeCheckpointHandler(),
      options=ocp.CheckpointManagerOptions(read_only=True, create=False, save_interval_steps=0,
                                           max_to_keep=None,
                                           best_fn=_score if best else None,
                                           best_mode="max"))
  return manager, directory


def latest_step(workdir: str) -> Optional[int]:
  """The step of the newest checkpoint in the run's ``checkpoints/``; None when there is none."""
  try:
    manager, _ = _open_read_only(workdir, best=False)
  except FileNotFoundError:
    return None
  with manager:
    return manager.latest_step()


def _select_step(manager: ocp.CheckpointManager, directory: str, step: Optional[int],
                 best: bool) -> int:
  steps = list(manager.all_steps())
  if not steps:
    raise FileNotFoundError(f"no checkpoint in {directory}")
  if step is None:
    # best_step() is None if no checkpoint recorded metrics: then the latest, as without best.
    step = manager.best_step() if best else None
    return manager.latest_step() if step is None else step
  if step not in steps:
    raise ValueError(f"no checkpoint of step {step} in {directory}; saved steps: {sorted(steps)}")
  return step


def _restore(manager: ocp.CheckpointManager, step: int, abstract_params: Any) -> Any:
  """Only ``params`` of checkpoint ``step``, as the leaves of ``abstract_params`` say (shapes,
  dtypes, shardings; a leaf without sharding comes back as a NumPy array)."""
  abstract = {"params": abstract_params}
  restored = manager.restore(step, args=ocp.args.PyTreeRestore(
      item=abstract, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
      partial_restore=True))
  return restored["params"]


def restore_params(workdir: str, model: models.SSD, mesh: jax.sharding.Mesh,
                   step: Optional[int] = None, best: bool = False) -> tuple[Any, int, str]:
  """``(params, step, checkpoint folder)`` of a run, read-only (a run still training there is not
  disturbed); only ``params`` are read, not the optimizer state.

  Args:
    workdir: the run's ``--workdir``.
    model: the model of the run's config (its params give the shapes to restore).
    mesh: params come back replicated over it.
    step: the checkpoint step; None = the latest (or, with ``best``, the best).
    best: read ``checkpoints_best/`` instead of ``checkpoints/``.

  Raises:
    FileNotFoundError: ``workdir`` or its checkpoint folder is missing or holds no checkpoint.
    ValueError: ``step`` is not saved there, or the checkpoint does not fit ``model``.
  """
  manager, directory = _open_read_only(workdir, best)
  with manager:
    step = _select_step(manager, directory, step, best)
    abstract = abstract_params(model, mesh)
    _check_shapes(abstract, manager.item_metadata(step).tree["params"], f"{directory}/{step}")
    params = _restore(manager, step, abstract)
  logging.info("Loaded %s/%d", directory, step)
  return params, int(step), directory


def read_params(workdir: str) -> tuple[Any, int]:
  """``(params as NumPy arrays, step)`` of a run's latest checkpoint, whatever its model: the
  shapes come from the checkpoint (for warm starts from another run, ``config.init_from``)."""
  manager, directory = _open_read_only(workdir, best=False)
  with manager:
    step = _select_step(manager, directory, None, best=False)
    stored = manager.item_metadata(step).tree["params"]
    abstract = jax.tree_util.tree_map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), stored)
    params = _restore(manager, step, abstract)
  logging.info("Read the params of %s/%d", directory, step)
  return params, int(step)
