"""Shared helpers of the benchmark scripts: timing, machine description, JSON output."""

import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Hashable, Iterator, Sequence

import numpy as np


# The repository root, where the benchmark modules run from.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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


def time_fn(fn: Callable[[], Any], iters: int, warmup: int = 1) -> dict[str, Any]:
  """Runs ``fn`` (which must block until its result is ready) and returns seconds per call:
  ``median_s`` and every timed call's (``times_s``, in call order).

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
  return {"first_call_s": first, "median_s": float(np.median(times)), "times_s": times}


def timed_blocks(run: Callable[[int], Any], steps: int,
                 blocks: int) -> tuple[list[int], list[float]]:
  """Splits ``steps`` into ``min(blocks, steps)`` blocks of nearly equal size and times
  ``run(size)`` (which must return once its steps are done) for each: (sizes, seconds)."""
  sizes = [len(b) for b in np.array_split(np.arange(steps), min(blocks, steps))]
  seconds = []
  for size in sizes:
    start = time.perf_counter()
    run(size)
    seconds.append(time.perf_counter() - start)
  return sizes, seconds


def rotation(items: Sequence[Any], repeat: int) -> list[Any]:
  """``items`` in the order of repeat ``repeat`` of an interleaved comparison: the first moves by
  one every repeat, so that a machine's drift reaches every contestant alike."""
  shift = repeat % len(items)
  return [*items[shift:], *items[:shift]]


def interleave(groups: Sequence[Sequence[Hashable]], repeats: int,
               measure: Callable[[Hashable], Any]) -> dict[Hashable, list[Any]]:
  """``measure(item)`` for every item of every group, ``repeats`` times: per repeat group after
  group, the items of a group in ``rotation(group, repeat)`` order, so that a machine's drift
  reaches every contestant of a group alike. Returns each item's results in repeat order."""
  results = {item: [] for group in groups for item in group}
  for repeat in range(repeats):
    for group in groups:
      for item in rotation(group, repeat):
        results[item].append(measure(item))
  return results


def contest(values: dict[str, Sequence[float]]) -> dict[str, Any]:
  """Repeated figures of contestants (the first the baseline; higher is better, e.g. images/s)
  -> per contestant ``C`` its ``spread`` and ``C_repeats`` (the values), and for every other its
  per-repeat ratio to the baseline: ``C_ratio`` (spread) and ``C_ratios``. The median ratio is
  that of the per-repeat ratios, not the ratio of the medians."""
  names = list(values)
  row = {}
  for name in names:
    row[name] = spread(values[name])
    row[f"{name}_repeats"] = list(values[name])
  for name in names[1:]:
    ratios = [v / b for v, b in zip(values[name], values[names[0]])]
    row[f"{name}_ratios"] = ratios
    row[f"{name}_ratio"] = spread(ratios)
  return row


def median_range(values: Sequence[float]) -> tuple[float, list[float]]:
  """The median and ``[min, max]`` of repeated measurements: what the benchmarks report."""
  return float(np.median(values)), [float(min(values)), float(max(values))]


def spread(values: Sequence[float]) -> dict[str, Any]:
  """``median_range`` as the JSON gives it: ``{"median": m, "range": [min, max]}``."""
  median, low_high = median_range(values)
  return {"median": median, "range": low_high}


def format_spread(median: float, low_high: Sequence[float], fmt: str = ".2f") -> str:
  """``median [low-high]``, each number in ``fmt``: how the tables print a figure's spread."""
  return f"{median:{fmt}} [{low_high[0]:{fmt}}-{low_high[1]:{fmt}}]"


def summarize(runs: Sequence[dict[str, Any]], group: Sequence[str], figures: Sequence[str],
              per_run: Sequence[str] = ()) -> list[dict[str, Any]]:
  """Repeated runs -> one row per distinct value of the ``group`` fields (in order of first
  appearance): the first run's fields, each of ``figures`` it has replaced by its median over
  the group's runs with ``FIGURE_range`` ([min, max]) beside it, and ``repeats``. The
  ``per_run`` fields (a spread within one run, e.g. its blocks') stay only in a row of one run:
  a row over several has its spread between them in ``FIGURE_range``."""
  groups = {}
  for run in runs:
    groups.setdefault(tuple(run[key] for key in group), []).append(run)
  rows = []
  for same in groups.values():
    row = dict(same[0])
    for key in figures:
      if key in row:
        row[key], row[f"{key}_range"] = median_range([run[key] for run in same])
    if len(same) > 1:
      for key in per_run:
        row.pop(key, None)
    row["repeats"] = len(same)
    rows.append(row)
  return rows


def run_isolated(module: str, args: Sequence[str]) -> dict[str, Any]:
  """``python -m module *args --out=TMP`` in a fresh interpreter from the repository root (its
  own compile caches and peak memory); returns the first entry of its JSON's ``results``."""
  with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, "result.json")
    # absl keeps a repeated flag's last value: this --out wins over one in args.
    subprocess.run([sys.executable, "-m", module, *args, f"--out={out}"], check=True,
                   cwd=_ROOT, stdout=subprocess.DEVNULL)
    with open(out) as f:
      return json.load(f)["results"][0]


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
