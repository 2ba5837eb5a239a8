r"""The default experiment: ``ssd_tiny`` on the built-in synthetic shapes dataset, on CPU.

  python -m experiments.main --config=experiments/configs/synthetic.py --workdir=runs/synthetic
  # a 1-minute smoke run:
  python -m experiments.main --config=experiments/configs/synthetic.py --workdir=/tmp/smoke \
      --config.num_train_steps=50 --config.data.num_eval_examples=32
"""

import ml_collections

from experiments.configs import common


def get_config() -> ml_collections.ConfigDict:
  c = common.base_config()
  c.num_train_steps = 2500
  c.batch_size = 32
  c.log_every_steps = 50
  c.model.name = "ssd_tiny"

  c.data.source = "synthetic"
  c.data.max_boxes = 8
  c.data.num_train_examples = 20_000
  c.data.num_val_examples = 100  # selects checkpoints_best/
  c.data.num_eval_examples = 300
  c.data.synthetic = ml_collections.ConfigDict(dict(
      image_size=128, num_classes=4, min_objects=1, max_objects=4, scale_range=(0.1, 0.6),
      aspect_ratio_range=(0.5, 2.0), seed=0))

  c.optimizer.name = "adamw"
  c.optimizer.lr = 3e-3
  c.optimizer.weight_decay = 1e-4
  c.optimizer.warmup_steps = 100
  c.optimizer.decay_steps = (1800, 2300)

  c.eval.every_steps = 1250
  c.eval.batch_size = 50
  c.checkpoint.every_steps = 250
  return c
