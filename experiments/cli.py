"""What the command-line entry points share: log filtering, a safe process exit, and the flags
that name a trained run."""

import os
import sys
from typing import Any, Callable

from absl import flags
from absl import logging
from ml_collections import config_flags

from ssd_jax import experiment


def quiet_orbax() -> None:
  """Orbax logs every step of every save at INFO; keep the console for training progress."""
  logging.get_absl_handler().addFilter(lambda record: "/orbax/" not in record.pathname)


def run_and_exit(fn: Callable[[], Any]) -> None:
  """Runs ``fn`` and ends the process with its status, skipping interpreter teardown.

  Training stops early on SIGTERM (``SystemExit(143)``), Ctrl-C or an error, with the input
  pipeline mid-flight. Tearing down a busy tf.data iterator can deadlock: its destructor holds
  the GIL while it waits for in-flight ``tf.numpy_function`` calls (the synthetic source), which
  need the GIL. Checkpoints, metrics and event files are written and flushed before
  ``train_and_evaluate`` returns or raises, so nothing is lost by exiting at once.
  """
  try:
    fn()
    code = 0
  except SystemExit as e:
    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
  except BaseException:  # pylint: disable=broad-except  (reported, then the process ends)
    logging.exception("Failed:")
    code = 1
  logging.flush()
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(code)  # pylint: disable=protected-access


class TrainedRunFlags:
  """``--config``, ``--workdir``, ``--step`` and ``--best``: a trained run's checkpoint (for the
  scripts that use one: detection, export). Create at module level, before ``app.run``."""

  def __init__(self):
    self._config = config_flags.DEFINE_config_file(
        "config", None, "The run's experiment config file (with the overrides it was trained "
        "with).", lock_config=True)
    self._workdir = flags.DEFINE_string("workdir", None, "The training run's workdir.")
    self._step = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest, or "
                                      "the best with --best).")
    self._best = flags.DEFINE_bool("best", False, "Use checkpoints_best/ (best by "
                                   "config.checkpoint.best_metric on the validation split) "
                                   "instead of checkpoints/.")
    flags.mark_flags_as_required(["config", "workdir"])

  def load(self) -> experiment.TrainedRun:
    """The run's model, label map and checkpoint params (Orbax's per-step logs filtered)."""
    quiet_orbax()
    return experiment.load_trained_run(self._config.value, self._workdir.value,
                                       step=self._step.value, best=self._best.value)
