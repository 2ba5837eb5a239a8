"""The default synthetic experiment shrunk to seconds, for the train-loop tests."""

import ml_collections

from experiments.configs import synthetic


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
