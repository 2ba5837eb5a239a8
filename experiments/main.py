"""Trains and/or evaluates SSD: parses flags and calls ``ssd_jax.train.train_and_evaluate``.

  python -m experiments.main --config=experiments/configs/synthetic.py --workdir=runs/synthetic
  python -m experiments.main --config=experiments/configs/ssd300_voc0712.py \\
      --config.data.root=/data/VOCdevkit --workdir=runs/ssd300 --config.optimizer.lr=1e-3
"""

import json

from absl import app, flags, logging
import jax
from ml_collections import config_flags

from experiments import cli
from ssd_jax import train

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Checkpoints, logs and metrics go here.")
_MODE = flags.DEFINE_enum("mode", "train_and_eval", ["train", "eval", "train_and_eval"],
                          "What to run.")
flags.mark_flags_as_required(["config", "workdir"])


def _run() -> None:
  logging.info("JAX devices: %s", jax.devices())
  metrics = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value, mode=_MODE.value)
  if metrics:
    summary = {k: v for k, v in metrics.items() if not isinstance(v, dict)}
    print(json.dumps(summary, indent=2))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  cli.quiet_orbax()
  cli.run_and_exit(_run)


if __name__ == "__main__":
  app.run(main)
