r"""Training throughput on the default JAX backend, built as ``train.train_and_evaluate`` does.

  python -m benchmarks.bench_train [--models=ssd_tiny,ssd300_vgg16] [--batch=0]
      [--dtype=float32|bfloat16] [--steps=20] [--warmup_steps=3] [--blocks=5]
      [--measure=end_to_end,step]
      [--data=config,voc_folder] [--voc_images=300] [--voc_root=DIR] [--repeats=1]
      [--config=experiments/configs/ssd300_voc0712.py] [--config.<field>=<value> ...]
      [--hlo_dir=DIR] [--profile_dir=DIR] [--out=benchmarks/results/bench_train.json]

Per model, its config (``parts.config``: the model's own recipe, or ``--config`` with its
overrides, with the model name, batch size and dtype set, reading the synthetic shapes at the
model's input size so that no resize is hidden in the figures) gives the source, the model, the
optimizer, the initial state and the jitted data-parallel step on the trainer's mesh, through
the same ``ssd_jax.experiment`` functions training uses. Measured:
  end_to_end  the train loop: ``next(batches)`` (augmenting ``train_iterator``) -> ``global_batch``
              -> step, with the trainer's periodic metric fetch; images/s between the end of
              ``--warmup_steps`` steps and the end of ``--steps`` more.
  step        the step alone on one device-resident batch (no input pipeline, no transfer).
The timed steps run in ``--blocks`` blocks, each ending once its last step has finished: besides
the rate over all of them, ``MEASURE_images_per_s_blocks`` gives the median and range of the
blocks' rates, a spread within one run that costs no extra compile (what a short GPU lease
affords; ``--repeats`` gives the spread between processes).
Data (``--data``): ``config`` is the synthetic shapes; ``voc_folder`` the same config reading
a user's folder of photos instead (``--voc_root``, e.g. a real photo set; by default the stand-in
of ``experiments/make_voc_folder.py``, ``--voc_images`` cluttered 300-500 px JPEGs of quality
85, written to a temporary folder): is a user's data read as fast as the synthetic default's? ``--repeats`` runs every (model, data) pair
that many times, interleaved, each in its own process; the table gives median and range.
Also reported: the wait for the first batch (pipeline start-up), the step's compile time
(``lower().compile()``) and the peak resident memory. ``step`` above ``end_to_end`` means the
input pipeline (or on CPU, its competition for the cores) holds training back. Batches the
pipeline buffers while the step compiles make the first steps look faster than steady state
when input is the bottleneck: use enough ``--warmup_steps`` and ``--steps``. With several
models each runs in its own subprocess, so that the peak memory belongs to one model.

``--hlo_dir`` writes the compiled step's optimized HLO there
(``MODEL_DTYPE_bBATCH_DATA.hlo.txt``), ``--profile_dir`` a ``jax.profiler`` trace of each
measurement's timed steps (a folder of that name + ``_end_to_end`` / ``_step``): where the
step's time goes, readable after the run (a traced run's figures carry the profiler's cost).

``--batch=0`` takes a per-model default: 32 for ``ssd_tiny``, for the VGG16 models 32 on an
accelerator and 8 on CPU. Further ``--config.*`` overrides change what is measured, e.g.
``--config.model.conv_impl=xla``; pass them as ``--flag=value``.
"""

import os
import sys
import tempfile
import time

from absl import app, flags
import jax
import ml_collections
from ml_collections import config_flags

from benchmarks import common, parts
from ssd_jax import experiment, models, train_step

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config to measure (default: each model's own recipe; its model, "
    "batch size and dtype are set by the flags below).", lock_config=True)
_MODELS = flags.DEFINE_list("models", ["ssd_tiny", "ssd300_vgg16"], "Model names.")
_BATCH = flags.DEFINE_integer("batch", 0, "Global batch size; 0 = per-model default.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Computation dtype.")
_STEPS = flags.DEFINE_integer("steps", 20, "Timed steps.")
_WARMUP = flags.DEFINE_integer("warmup_steps", 3, "Steps run before timing (after compiling).")
_BLOCKS = flags.DEFINE_integer("blocks", 5, "Timed blocks the steps are split into (spread "
                               "within a run).")
_MEASURE = flags.DEFINE_multi_enum("measure", ["end_to_end", "step"], ["end_to_end", "step"],
                                   "What to time (repeat the flag for both).")
_DATA = flags.DEFINE_list("data", ["config"], "Data of each run: 'config' (the config's "
                          "source) and/or 'voc_folder' (a stand-in folder of one's own photos).")
_VOC_IMAGES = flags.DEFINE_integer("voc_images", 300, "Training images of the voc_folder case.")
_VOC_ROOT = flags.DEFINE_string("voc_root", "", "The voc_folder case's folder of one's own photos, "
                                 "in any layout own_data reads (default: the stand-in, written "
                                 "to a temporary folder).")
_REPEATS = flags.DEFINE_integer("repeats", 1, "Runs of every (model, data) pair, interleaved.")
_HLO_DIR = flags.DEFINE_string("hlo_dir", "", "Folder for the compiled step's optimized HLO.")
_PROFILE_DIR = flags.DEFINE_string("profile_dir", "", "Folder for profiler traces of the steps.")
_OUT = flags.DEFINE_string("out", "benchmarks/results/bench_train.json", "JSON output.")
_DATA_CASES = ("config", "voc_folder")


def default_batch(name: str) -> int:
  """The per-model batch of ``--batch=0`` (a VGG16 step of 32 images takes long on CPU)."""
  if name == "ssd_tiny" or jax.default_backend() != "cpu":
    return 32
  return 8


def bench_one(config: ml_collections.ConfigDict, steps: int, warmup_steps: int,
              measure: list[str], blocks: int = 1) -> dict:
  """Throughput of the trainer built from ``config`` (see the module docstring)."""
  mesh = experiment.create_mesh()
  training = experiment.create_training(config, mesh)
  model, step = training.model, training.step_fn
  state = training.initial_state(config, mesh)
  batches = experiment.train_batches(config, training.data.train)

  start = time.perf_counter()
  first = train_step.global_batch(next(batches), mesh)
  first_batch_s = time.perf_counter() - start
  start = time.perf_counter()
  step_fn = step.lower(state, first).compile()
  compile_s = time.perf_counter() - start
  tag = f"{config.model.name}_{config.model.dtype}_b{config.batch_size}_{config.data.source}"
  common.dump_hlo(step_fn, _HLO_DIR.value, tag)
  result = {
      "model": config.model.name, "batch": config.batch_size, "dtype": config.model.dtype,
      "conv_impl": config.model.conv_impl, "image_size": model.image_size,
      "data": config.data.source,
      "num_params": int(sum(x.size for x in jax.tree.leaves(state.params))),
      "steps": steps, "warmup_steps": warmup_steps, "first_batch_s": first_batch_s,
      "compile_s": compile_s}
  fetch_every = config.log_every_steps
  for name in ("end_to_end", "step"):
    if name not in measure:
      continue
    if name == "end_to_end":
      batch_fn = lambda: train_step.global_batch(next(batches), mesh)
    else:
      batches.close()  # Stops the pipeline, so that it does not compete for the CPU.
      batch_fn = lambda: first

    def run(num_steps: int, batch_fn=batch_fn) -> None:
      nonlocal state  # the step donates its input: keep the newest
      state = parts.run_steps(step_fn, state, batch_fn, num_steps, fetch_every)

    run(warmup_steps)
    with common.trace(_PROFILE_DIR.value, f"{tag}_{name}"):
      sizes, seconds = common.timed_blocks(run, steps, blocks)
    result[f"{name}_images_per_s"] = steps * config.batch_size / sum(seconds)
    result[f"{name}_ms_per_step"] = sum(seconds) / steps * 1e3
    result[f"{name}_images_per_s_blocks"] = common.spread(
        [size * config.batch_size / s for size, s in zip(sizes, seconds)])
  if int(jax.device_get(state.first_bad_step)) >= 0:
    result["warning"] = "non-finite loss during the benchmark"
  result["peak_rss_mib"] = common.peak_rss_mib()
  return result


def _run_isolated(name: str, data: str, voc_root: str) -> dict:
  """Runs one (model, data) pair in a fresh interpreter with the same flags (its own peak
  memory)."""
  # absl keeps the last value of a repeated flag: these override the caller's.
  return common.run_isolated("benchmarks.bench_train", [
      *sys.argv[1:], f"--models={name}", f"--data={data}",
      f"--voc_root={voc_root if data == 'voc_folder' else ''}", "--repeats=1"])


def _stand_in_folder(tmp: str) -> str:
  from ssd_jax.data import cluttered_voc  # pylint: disable=g-import-not-at-top
  root = os.path.join(tmp, "voc_folder")
  cluttered_voc.write_voc_folder(root, num_trainval=_VOC_IMAGES.value, num_test=1)
  return root


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  unknown = [m for m in _MODELS.value if m not in models.MODEL_NAMES]
  if unknown:
    raise app.UsageError(f"unknown --models {unknown}; valid: {models.MODEL_NAMES}")
  if _STEPS.value < 1 or _BATCH.value < 0 or _WARMUP.value < 0 or _BLOCKS.value < 1:
    raise app.UsageError("need --steps >= 1, --blocks >= 1, --batch >= 0 and --warmup_steps >= 0")
  unknown = [d for d in _DATA.value if d not in _DATA_CASES]
  if unknown or _REPEATS.value < 1:
    raise app.UsageError(f"need --data of {_DATA_CASES} (got {unknown}) and --repeats >= 1")
  pairs = [(m, d) for m in _MODELS.value for d in _DATA.value]
  with tempfile.TemporaryDirectory() as tmp:
    voc_root = _VOC_ROOT.value or (_stand_in_folder(tmp) if "voc_folder" in _DATA.value else "")
    if len(pairs) == 1 and _REPEATS.value == 1:
      (name, data), = pairs
      config = parts.config(name, _BATCH.value or default_batch(name), _DTYPE.value,
                            base=_CONFIG.value, voc_root=voc_root if data == "voc_folder" else "")
      runs = [bench_one(config, _STEPS.value, _WARMUP.value, _MEASURE.value, _BLOCKS.value)]
    else:  # interleaved: machine noise spreads over every pair alike
      by_pair = common.interleave([pairs], _REPEATS.value,
                                  lambda pair: _run_isolated(*pair, voc_root))
      runs = [run for repeat in zip(*by_pair.values()) for run in repeat]
  results = common.summarize(runs, ("model", "data"), (
      "end_to_end_images_per_s", "step_images_per_s", "first_batch_s", "compile_s",
      "peak_rss_mib"), per_run=("end_to_end_images_per_s_blocks", "step_images_per_s_blocks"))
  within = _REPEATS.value == 1  # one run per row: its blocks' spread; each run's stay in "runs"
  print(f"backend {jax.default_backend()}, {jax.device_count()} device(s), {os.cpu_count()} "
        f"cores; images/s over {_STEPS.value} steps after {_WARMUP.value} warm-up steps; " +
        (f"[range] of {min(_BLOCKS.value, _STEPS.value)} blocks" if within else
         f"median [range] of {_REPEATS.value} runs"))
  print(f"{'model':14s} {'data':>13s} {'px':>4s} {'batch':>5s} {'dtype':>8s} "
        f"{'end-to-end':>20s} {'step only':>20s} {'1st batch s':>11s} {'compile s':>9s} "
        f"{'peak MiB':>9s}")

  def cell(row: dict, key: str) -> str:
    if key not in row:
      return f"{'-':>20s}"
    low, high = row[f"{key}_blocks"]["range"] if within else row[f"{key}_range"]
    return f"{row[key]:7.1f} [{low:.0f}-{high:.0f}]".rjust(20)

  for r in results:
    ips = [cell(r, k) for k in ("end_to_end_images_per_s", "step_images_per_s")]
    print(f"{r['model']:14s} {r['data']:>13s} {r['image_size']:4d} {r['batch']:5d} "
          f"{r['dtype']:>8s} {ips[0]} {ips[1]} {r['first_batch_s']:11.2f} "
          f"{r['compile_s']:9.1f} {r['peak_rss_mib']:9.0f}")
  common.write_json(_OUT.value, {"benchmark": "bench_train", "config": (
      os.path.relpath(_config_path(), _ROOT) if _CONFIG.value else "each model's own recipe"),
                                 "repeats": _REPEATS.value, "results": results, "runs": runs})


def _config_path() -> str:
  return config_flags.get_config_filename(flags.FLAGS["config"])


if __name__ == "__main__":
  app.run(main)
