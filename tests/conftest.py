"""Shared test fixtures, one persistent XLA compilation cache for the whole session, XLA flags
that save compile time in the test processes (``xla_flags.IN_PROCESS_XLA_FLAGS``), and the slowest
modules scheduled first.

Most of the suite's time is XLA compiling the same small models again: in each test module, in
each ``experiments/main.py`` subprocess and in each pytest-xdist worker (all inherit the cache
through the environment). The session that creates the cache folder removes it at the end, so
every session starts cold and nothing is reused across code changes.
"""

import os
import shutil
import tempfile

import numpy as np
import pytest

from tests import xla_flags

os.environ["XLA_FLAGS"] = xla_flags.with_test_xla_flags(os.environ.get("XLA_FLAGS", ""))

_OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _OWN_CACHE:  # The controller (or a plain pytest run); xdist workers inherit its folder.
  os.environ.update({"JAX_COMPILATION_CACHE_DIR": tempfile.mkdtemp(prefix="ssd_jax_xla_cache_"),
                     "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
                     "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"})


def pytest_sessionfinish(session, exitstatus):
  del session, exitstatus
  if _OWN_CACHE:
    shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)


# The modules of the end-to-end runs (10-25 s a test, half of the suite's time) run first.
# pytest-xdist's worksteal scheduler gives each worker a contiguous half of the collection, and an
# idle worker takes tests from the end of the other's queue: in file order these modules came
# last, and the suite could end with one worker running a 25 s test while the other waited.
# Measured on 2 cores, 3 interleaved suite runs each: 238 [228-256] s against 253 [244-257] s.
_SLOW_MODULES = ("test_main.py", "test_train.py", "test_sweep.py", "test_distributed.py")


def pytest_collection_modifyitems(session, config, items):
  del session, config
  rank = lambda item: (_SLOW_MODULES.index(item.path.name) if item.path.name in _SLOW_MODULES
                       else len(_SLOW_MODULES))
  items.sort(key=rank)  # stable: each module's tests keep their order


def random_boxes(rng: np.random.Generator, n: int, degenerate_fraction: float = 0.2,
                 outside: bool = True) -> np.ndarray:
  """``[n, 4]`` xyxy boxes: mostly valid, some zero-area/inverted, some reaching off-image."""
  lo = -0.2 if outside else 0.0
  hi = 1.2 if outside else 1.0
  xy = rng.uniform(lo, hi - 0.05, size=(n, 2))
  wh = rng.uniform(0.01, 0.6, size=(n, 2))
  out = np.concatenate([xy, xy + wh], axis=1)
  bad = rng.random(n) < degenerate_fraction
  kinds = rng.integers(0, 3, size=n)
  out[bad & (kinds == 0), 2] = out[bad & (kinds == 0), 0]  # zero width
  out[bad & (kinds == 1), 3] = out[bad & (kinds == 1), 1] - 0.1  # inverted
  out[bad & (kinds == 2)] = out[bad & (kinds == 2)][:, [0, 1, 0, 1]]  # a point
  return out.astype(np.float32)


@pytest.fixture
def rng() -> np.random.Generator:
  return np.random.default_rng(0)


@pytest.fixture(scope="session")
def trained_workdir(tmp_path_factory) -> str:
  """A run of ``tests/tiny_train_config.py`` trained 4 steps (checkpoints 2 and 4, no evaluation,
  no ``checkpoints_best``), once per test process for the modules that read it (detect,
  export). Read only: a test that changes a run copies it first."""
  from tests import tiny_train_config  # pylint: disable=g-import-not-at-top
  return tiny_train_config.trained_run(str(tmp_path_factory.mktemp("trained_run")))
