"""Shared helpers of the benchmark scripts: timing, machine description, JSON output."""

import json
import os
import platform
import resource
import time
from typing import Any, Callable

import jax


# The CPU flags that decide which kernels XLA and TensorFlow pick.
_VECTOR_FLAG_PREFIXES = ("avx", "amx", "fma", "sse4", "f16c")


def _cpuinfo_field(name: str) -> str | None:
  try:
    with open("/proc/cpuinfo") as f:
      return next(line.split(":", 1)[1].strip() for line in f if line.split(":")[0].strip() == name)
  except (OSError, StopIteration):
    return None


def machine() -> dict[str, Any]:
  """What the figures were measured on: CPU model and vector extensions, cores, JAX backend."""
  cpu = _cpuinfo_field("model name") or platform.processor() or platform.machine()
  flags = (_cpuinfo_field("flags") or "").split()
  return {"cpu": cpu, "cores": os.cpu_count(),
          "vector_extensions": sorted(f for f in flags if f.startswith(_VECTOR_FLAG_PREFIXES)),
          "backend": jax.default_backend(),
          "devices": [str(d) for d in jax.devices()], "jax": jax.__version__,
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


def peak_rss_mib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_json(path: str, payload: dict[str, Any]) -> None:
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  payload = {"machine": machine(), "time": time.strftime("%Y-%m-%d %H:%M:%S"), **payload}
  with open(path, "w") as f:
    json.dump(payload, f, indent=2)
  print(f"wrote {path}")
