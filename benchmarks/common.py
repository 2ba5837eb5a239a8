"""Shared helpers of the benchmark scripts: timing, machine description, JSON output."""

import contextlib
import json
import os
import platform
import resource
import time
from typing import Any, Callable, Iterator, Sequence

import numpy as np


# The CPU flags that decide which kernels XLA and TensorFlow pick.
_VECTOR_FLAG_PREFIXES = ("avx", "amx", "fma", "sse4", "f16c")


def _first_cpu_info() -> dict[str, str]:
  """The fields of the first processor in /proc/cpuinfo (empty where there is none)."""
  info = {}
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if not line.strip():
          break
        key, _, value = line.partition(":")
        info[key.strip()] = value.strip()
  except OSError:
    pass
  return info


def machine() -> dict[str, Any]:
  """What the figures were measured on: CPU model and vector extensions, cores, JAX backend and
  its device model (e.g. 'NVIDIA H200')."""
  # JAX is imported where it is used, so that a process timing another framework
  # (compare_torchvision's torchvision worker) runs without it.
  import jax  # pylint: disable=g-import-not-at-top
  info = _first_cpu_info()
  cpu = info.get("model name") or platform.processor() or platform.machine()
  flags = info.get("flags", "").split()
  return {"cpu": cpu, "cores": os.cpu_count(),
          "vector_extensions": sorted(f for f in flags if f.startswith(_VECTOR_FLAG_PREFIXES)),
          "backend": jax.default_backend(),
          "devices": [str(d) for d in jax.devices()],
          "device_kind": jax.devices()[0].device_kind, "jax": jax.__version__,
          "python": platform.python_version()}


def time_fn(fn: Callable[[], Any], iters: int, warmup: int = 1) -> dict[str, float]:
  """Runs ``fn`` (which must block until its result is ready) and returns seconds per call.

  The first call's time (compilation included) is reported separately as ``first_call_s``.
  """
  start = time.perf_counter()
  fn()
  first = time.perf_counter() - start
  for _ in range(warmup - 1):
    fn()
  times = []
  for _ in range(iters):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  times.sort()
  return {"first_call_s": first, "median_s": times[len(times) // 2], "min_s": times[0]}


def median_range(values: Sequence[float]) -> tuple[float, list[float]]:
  """The median and ``[min, max]`` of repeated measurements: what the benchmarks report."""
  return float(np.median(values)), [float(min(values)), float(max(values))]


def peak_rss_mib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_json(path: str, payload: dict[str, Any]) -> None:
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  payload = {"machine": machine(), "time": time.strftime("%Y-%m-%d %H:%M:%S"), **payload}
  with open(path, "w") as f:
    json.dump(payload, f, indent=2)
  print(f"wrote {path}")


def dump_hlo(compiled: Any, directory: str, name: str) -> None:
  """Writes a compiled function's optimized HLO to ``directory/name.hlo.txt`` ('' = off).

  It is what the backend runs after fusion and layout assignment; on a GPU each cuDNN or cuBLAS
  call with the algorithm the autotuner chose, so a figure can be explained after the device is
  gone.
  """
  if directory:
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, f"{name}.hlo.txt"), "w") as f:
      f.write(compiled.as_text())


@contextlib.contextmanager
def trace(directory: str, name: str) -> Iterator[None]:
  """A ``jax.profiler`` trace of the block in ``directory/name`` ('' = off), for TensorBoard's
  profile plugin or XProf: the time of each kernel or XLA:CPU op."""
  if not directory:
    yield
    return
  import jax  # pylint: disable=g-import-not-at-top
  with jax.profiler.trace(os.path.join(directory, name)):
    yield
