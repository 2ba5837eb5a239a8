"""The default synthetic experiment shrunk to seconds, for the train-loop tests."""

import ml_collections

from experiments.configs import synthetic
from ssd_jax import train


def get_config() -> ml_collections.ConfigDict:
  c = synthetic.get_config()
  c.batch_size = 4
  c.num_train_steps = 6
  c.log_every_steps = 1
  c.data.num_train_examples = 64
  c.data.num_val_examples = 8
  c.data.num_eval_examples = 8
  c.eval.batch_size = 4
  c.eval.every_steps = 1000
  c.checkpoint.every_steps = 2
  c.optimizer.warmup_steps = 2
  # XLA's convolutions compile ~4x faster than the Winograd path, and compile time is most of
  # these tests' run time; tests/test_conv.py and tests/test_models.py cover the Winograd path.
  c.model.conv_impl = "xla"
  return c


def trained_run(workdir: str, num_train_steps: int = 4) -> str:
  """``workdir`` with a run of this config trained ``num_train_steps`` steps (checkpoints every 2
  steps, no evaluation, no ``checkpoints_best``)."""
  config = get_config()
  config.num_train_steps = num_train_steps
  train.train_and_evaluate(config, workdir, mode="train")
  return workdir
