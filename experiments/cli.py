"""What the command-line entry points share: log filtering and a safe process exit."""

import os
import sys
from typing import Any, Callable

from absl import logging


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
