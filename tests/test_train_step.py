"""Frozen layers (``config.freeze_layers``, Caffe SSD's ``freeze_layers``) in the train step and
the optimizer: which parameters they name, that they keep their values while the rest trains as
it would without them, and that the step builds no backward pass for them."""

import jax
import numpy as np
import pytest

from experiments.configs import common, ssd300_voc0712
from ssd_jax import experiment, overrides, train_step
from tests import fixtures, tiny_train_config

# ssd_tiny's first two layers: its patchify stem and the first 3x3 convolution.
FROZEN = ("stem", "p3_conv1")


def _tiny(**changes):
  """The tiny config, plain SGD with momentum and weight decay, no warm-up; frozen layers need
  a run to load them from (only the check reads it here)."""
  return overrides.apply_overrides(tiny_train_config.get_config(), {
      "optimizer.name": "sgd", "optimizer.lr": 1e-2, "optimizer.warmup_steps": 0,
      "optimizer.weight_decay": 5e-4, "init_from": "a_run", **changes})


def _reference_mask(params, layers) -> dict[str, bool]:
  """Per ``/``-joined leaf path: is one of its module names (all but the last part) in
  ``layers``."""
  return {path: any(part in layers for part in path.split("/")[:-1])
          for path in fixtures.flat_params(params)}


def test_frozen_mask_names_whole_modules_on_the_path():
  model = experiment.create_model(tiny_train_config.get_config(), 4)
  params = jax.eval_shape(lambda: train_step.init_params(model, 0))
  for layers in (FROZEN, ("p4_conv2", "p3_mbox_conf"), ()):
    mask = fixtures.flat_params(train_step.frozen_mask(params, layers))
    assert {k: bool(v) for k, v in mask.items()} == _reference_mask(params, layers)
  assert sum(map(bool, fixtures.flat_params(train_step.frozen_mask(params, FROZEN)).values())) == 4
  # A prefix of a module's name is not that module.
  with pytest.raises(ValueError, match=r"\['p3'\] are not layers of the model; its layers: "):
    train_step.frozen_mask(params, ("p3_conv1", "p3"))


def test_paper_configs_freeze_the_first_two_vgg16_blocks_and_need_weights_to_freeze():
  config = ssd300_voc0712.get_config()
  assert config.freeze_layers == common.VGG16_FROZEN_LAYERS == (
      "conv1_1", "conv1_2", "conv2_1", "conv2_2")
  params = jax.eval_shape(lambda: train_step.init_params(experiment.create_model(config, 20), 0))
  mask = fixtures.flat_params(train_step.frozen_mask(params, config.freeze_layers))
  assert sorted(k for k, v in mask.items() if v) == sorted(
      f"backbone/{name}/{leaf}" for name in config.freeze_layers for leaf in ("bias", "kernel"))
  # Without pretrained weights (or a run) the frozen layers would stay random.
  with pytest.raises(ValueError, match="nothing is loaded into them"):
    experiment.create_optimizer(config, experiment.create_learning_rate_fn(config))
  config.pretrained_backbone = "vgg16.npz"
  experiment.create_optimizer(config, experiment.create_learning_rate_fn(config))


def _steps(config, num_steps: int):
  """``(initial params, params after each step)`` of ``config``'s train step on its first
  ``num_steps`` batches, flattened."""
  mesh = experiment.create_mesh()
  training = experiment.create_training(config, mesh)
  state = training.initial_state(config, mesh)
  initial = fixtures.flat_params(state.params)
  batches = experiment.train_batches(config, training.data.train)
  after = []
  for _ in range(num_steps):
    state, _ = training.step_fn(state, train_step.global_batch(next(batches), mesh))
    after.append(fixtures.flat_params(state.params))
  return initial, after


def test_frozen_layers_keep_their_values_and_the_others_train_as_without_them():
  """After a step from the same params, every trained leaf equals the step without frozen layers
  (its gradient is the same); frozen leaves keep their values over steps (no weight decay,
  no momentum), where the step without them moves them."""
  initial, (frozen_1, frozen_2) = _steps(_tiny(freeze_layers=FROZEN), 2)
  same_initial, (trained_1,) = _steps(_tiny(), 1)
  mask = _reference_mask(initial, FROZEN)
  assert initial.keys() == same_initial.keys() == mask.keys()
  for key, is_frozen in mask.items():
    np.testing.assert_array_equal(same_initial[key], initial[key], err_msg=key)
    if is_frozen:
      np.testing.assert_array_equal(frozen_1[key], initial[key], err_msg=key)
      np.testing.assert_array_equal(frozen_2[key], initial[key], err_msg=key)
      assert np.max(np.abs(trained_1[key] - initial[key])) > 1e-5, key
    else:
      np.testing.assert_allclose(frozen_1[key], trained_1[key], rtol=1e-5, atol=1e-7,
                                 err_msg=key)
  assert fixtures.largest_change(initial, frozen_2) > 1e-3  # the rest trains


def test_the_step_builds_no_backward_pass_for_frozen_layers():
  """The lowered step's convolutions (ssd_tiny with XLA's, before XLA removes anything): each
  trained layer has a forward, a kernel-gradient and an input-gradient one, except that nothing
  needs the image's gradient. Freezing the first two layers removes their kernel gradients, the
  second's input gradient and the input gradient of the layer after them: 4 fewer. (Frozen
  layers after a trained one keep their input gradients: the gradient passes through them.)"""
  counts = {}
  for name, changes in (("all", {}), ("frozen", {"freeze_layers": FROZEN}),
                        ("middle", {"freeze_layers": ("p3_conv2", "p4_conv1")})):
    config = _tiny(**changes)
    mesh = experiment.create_mesh()
    training = experiment.create_training(config, mesh)
    state = training.initial_state(config, mesh)
    batch = next(experiment.train_batches(config, training.data.train))
    lowered = training.step_fn.lower(state, train_step.global_batch(batch, mesh))
    counts[name] = lowered.as_text().count("stablehlo.convolution")
  assert counts["all"] - counts["frozen"] == 4, counts
  assert counts["all"] - counts["middle"] == 2, counts
