"""SSD throughput on the default JAX backend: forward, targets, train step, detect.

  python -m benchmarks.bench_model [--models ssd300_vgg16,ssd_tiny] [--batch 8] [--iters 5]
      [--dtype float32|bfloat16] [--conv_impl auto|xla|cpu_fast|winograd6] [--freeze]
      [--functions forward --functions detect ...] [--repeats 1] [--hlo_dir DIR]
      [--profile_dir DIR] [--out benchmarks/results/bench_model.json]

Per model, the functions of ``benchmarks.parts.compiled``, built by ``ssd_jax.experiment`` from
the model's own config (``parts.config``) on its first training batch: ``forward`` (the model),
``targets`` (the step's matching targets and multibox loss), ``train`` (the train step training
runs) and ``detect`` (the predict function of evaluation, detection and export). ``--functions``
measures a subset (only those are compiled). Reported: images/s (median over ``--iters`` calls,
and the calls' median and range as ``FUNCTION_images_per_s_calls``), compile seconds and the
peak resident memory of the process. With several models each runs in its own subprocess so
that the peak memory belongs to one model. ``--repeats N`` runs every model N times that way,
interleaved (``common.interleave``), and gives the median and range over the runs of each figure
(``FIGURE_range`` in the JSON, whose ``runs`` keeps every run). ``--freeze`` trains with the
paper recipes' frozen VGG16 blocks (after a one-step run to load them from, ``parts.with_weights``).
``--hlo_dir`` writes each compiled function's optimized HLO there, ``--profile_dir`` a
``jax.profiler`` trace of its timed calls: where the time goes, readable after the run (a traced
run's figures carry the profiler's cost).
"""

import os
import sys
import tempfile

from absl import app, flags
import jax

from benchmarks import common, parts
from ssd_jax import models

_MODELS = flags.DEFINE_list("models", ["ssd300_vgg16", "ssd_tiny"], "Model names.")
_BATCH = flags.DEFINE_integer("batch", 8, "Images per batch.")
_ITERS = flags.DEFINE_integer("iters", 5, "Timed calls per function.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Computation dtype.")
_CONV_IMPL = flags.DEFINE_enum("conv_impl", "auto", list(models.CONV_IMPLS),
                               "Convolution implementation (see ssd_jax.models.conv).")
_FREEZE = flags.DEFINE_bool("freeze", False, "Train with conv1_1 .. conv2_2 frozen.")
_MEASURE = flags.DEFINE_multi_enum("functions", list(parts.FUNCTIONS), parts.FUNCTIONS,
                                   "Functions to compile and time (repeat the flag for several).")
_REPEATS = flags.DEFINE_integer("repeats", 1, "Runs of every model, interleaved.")
_HLO_DIR = flags.DEFINE_string("hlo_dir", "", "Folder for the optimized HLO of each function.")
_PROFILE_DIR = flags.DEFINE_string("profile_dir", "", "Folder for profiler traces of the calls.")
_OUT = flags.DEFINE_string("out", "benchmarks/results/bench_model.json", "JSON output.")


def _measured() -> list[str]:
  """The ``--functions`` asked for, in table order."""
  return [f for f in parts.FUNCTIONS if f in _MEASURE.value]


def bench_one(name: str) -> dict:
  batch = _BATCH.value
  with tempfile.TemporaryDirectory() as tmp:
    cfg = parts.with_weights(parts.config(name, batch, _DTYPE.value, _CONV_IMPL.value,
                                          _FREEZE.value), tmp)
    built = parts.compiled(cfg, parts.first_batch(cfg), _measured(), _HLO_DIR.value)
  result = dict(built.facts)
  for fn_name, call in built.calls.items():
    with common.trace(_PROFILE_DIR.value, f"{name}_{fn_name}_{_DTYPE.value}_b{batch}"):
      t = common.time_fn(call, _ITERS.value)
    result[f"{fn_name}_images_per_s"] = batch / t["median_s"]
    result[f"{fn_name}_ms_per_batch"] = t["median_s"] * 1e3
    result[f"{fn_name}_images_per_s_calls"] = common.spread([batch / s for s in t["times_s"]])
  result["peak_rss_mib"] = common.peak_rss_mib()
  return result


def _run_isolated(name: str) -> dict:
  """Runs one model in a fresh interpreter with the same flags (its own peak memory and
  compilation caches)."""
  return common.run_isolated("benchmarks.bench_model",
                             [*sys.argv[1:], f"--models={name}", "--repeats=1"])


def main(_):
  unknown = [m for m in _MODELS.value if m not in models.MODEL_NAMES]
  if unknown:
    raise app.UsageError(f"unknown --models {unknown}; valid: {models.MODEL_NAMES}")
  if _REPEATS.value < 1:
    raise app.UsageError("--repeats must be >= 1")
  if len(_MODELS.value) == 1 and _REPEATS.value == 1:
    runs = [bench_one(_MODELS.value[0])]
  else:  # interleaved: machine noise spreads over every model alike
    by_model = common.interleave([_MODELS.value], _REPEATS.value, _run_isolated)
    runs = [run for repeat in zip(*by_model.values()) for run in repeat]
  measured = _measured()
  figures = [f"{f}_{figure}" for f in measured
             for figure in ("images_per_s", "ms_per_batch", "compile_s")]
  results = common.summarize(runs, ("model",), [*figures, "peak_rss_mib"],
                             per_run=[f"{f}_images_per_s_calls" for f in measured])
  within = _REPEATS.value == 1  # one run per row: the spread of its calls; each run's in "runs"

  def cell(row: dict, f: str) -> str:
    low_high = (row[f"{f}_images_per_s_calls"]["range"] if within
                else row[f"{f}_images_per_s_range"])
    return f"{common.format_spread(row[f'{f}_images_per_s'], low_high):>21s}"

  header = (f"{'model':14s} {'batch':>5s} {'dtype':>8s} " + " ".join(
      f"{f + ' img/s':>21s}" for f in measured) + " " + " ".join(
          f"{f[:5] + ' comp s':>12s}" for f in measured) + f" {'peak MiB':>9s}")
  print(f"backend {jax.default_backend()}, {os.cpu_count()} cores; " + (
      f"median [range] of {_ITERS.value} calls" if within else
      f"median [range] of {_REPEATS.value} runs, each the median of {_ITERS.value} calls"))
  print(header)
  for r in results:
    print(f"{r['model']:14s} {r['batch']:5d} {r['dtype']:>8s} " + " ".join(
        cell(r, f) for f in measured)
          + " " + " ".join(f"{r[f + '_compile_s']:12.1f}" for f in measured)
          + f" {r['peak_rss_mib']:9.0f}")
  common.write_json(_OUT.value, {"benchmark": "bench_model", "repeats": _REPEATS.value,
                                 "freeze": _FREEZE.value, "results": results, "runs": runs})


if __name__ == "__main__":
  app.run(main)
