"""Shared helpers of the benchmark scripts: timing, machine description, JSON output."""

import json
import os
import platform
import resource
import time
from typing import Any, Callable

import jax


def machine() -> dict[str, Any]:
  """What the figures were measured on."""
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
  except (OSError, StopIteration):
    pass
  return {"cpu": cpu, "cores": os.cpu_count(), "backend": jax.default_backend(),
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
