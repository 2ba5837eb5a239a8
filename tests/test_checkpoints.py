"""Resuming a run (``checkpoints.restore_latest``): the same config restores the saved state
exactly; a config whose train state differs (another optimizer, frozen layers, model) is a
clear error that says what differs and how to go on, not orbax's tree dump alone."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from ssd_jax import checkpoints, experiment, overrides, train_step
from tests import tiny_train_config


def _state(seed: int, width: int = 4, **changes) -> train_step.TrainState:
  """A small train state with ssd_tiny's first layer names and the optimizer state the tiny
  config (with ``changes``) builds for it, its values drawn from ``seed``."""
  config = overrides.apply_overrides(tiny_train_config.get_config(),
                                     {"init_from": "a_run", **changes})
  keys = jax.random.split(jax.random.key(seed), 2)
  params = {"stem": {"kernel": jax.random.normal(keys[0], (2, 2, 3, width))},
            "p3_conv1": {"kernel": jax.random.normal(keys[1], (3, 3, width, 8))}}
  tx = experiment.create_optimizer(config, experiment.create_learning_rate_fn(config))
  opt_state = tx.init(params)
  # A state some steps in: nonzero optimizer moments, so that restoring them is checked.
  _, opt_state = tx.update(jax.tree_util.tree_map(jnp.ones_like, params), opt_state, params)
  return train_step.TrainState(step=jnp.array(seed, jnp.int32), params=params,
                               opt_state=opt_state, first_bad_step=jnp.array(-1, jnp.int32))


def _leaves(state) -> list[np.ndarray]:
  return [np.asarray(x) for x in jax.tree_util.tree_leaves(state)]


@pytest.fixture
def manager(tmp_path):
  """A run's ``checkpoints/`` holding step 7 of the tiny config's AdamW state, opened by a manager
  of its own, as a resumed run opens it (one that has not saved yet)."""
  config = tiny_train_config.get_config()
  saving, _ = checkpoints.managers(str(tmp_path), config, with_best=False)
  saving.save(7, args=ocp.args.StandardSave(_state(7)))
  saving.wait_until_finished()
  saving.close()
  resuming, _ = checkpoints.managers(str(tmp_path), config, with_best=False)
  yield resuming
  resuming.close()


def test_resuming_with_the_same_config_restores_the_saved_state(manager, tmp_path):
  saved, fresh = _state(7), _state(0)
  restored = checkpoints.restore_latest(manager, fresh)
  assert jax.tree_util.tree_structure(restored) == jax.tree_util.tree_structure(fresh)
  for got, want in zip(_leaves(restored), _leaves(saved), strict=True):
    np.testing.assert_array_equal(got, want)
  assert int(restored.step) == 7
  # No checkpoint yet: the state given.
  empty, _ = checkpoints.managers(str(tmp_path / "new"), tiny_train_config.get_config(), False)
  assert checkpoints.restore_latest(empty, fresh) is fresh


@pytest.mark.parametrize("changes", [
    {"optimizer.name": "sgd"},          # another optimizer's state
    {"optimizer.grad_clip_norm": 1.0},  # one more transformation in the chain
    {"freeze_layers": ("stem",)}])      # frozen layers keep no optimizer state
def test_resuming_with_another_optimizer_says_what_to_do(manager, tmp_path, changes):
  with pytest.raises(ValueError) as error:
    checkpoints.restore_latest(manager, _state(0, **changes))
  message = str(error.value)
  assert message.startswith(f"Cannot resume from {tmp_path}/checkpoints/7: the optimizer state "
                            "stored there does not fit this config's")
  assert f"--config.init_from={tmp_path}." in message
  assert isinstance(error.value.__cause__, ValueError)  # orbax's, naming the difference


def test_resuming_another_model_names_the_parameter(manager, tmp_path):
  with pytest.raises(ValueError, match=re.escape(
      f"The checkpoint in {tmp_path}/checkpoints/7 does not fit the model of this config: "
      "params['p3_conv1']['kernel'] is stored as (3, 3, 4, 8), the model has (3, 3, 6, 8)")):
    checkpoints.restore_latest(manager, _state(0, width=6))
