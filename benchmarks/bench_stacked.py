r"""Runs trained together (``train.train_stacked``) against the same runs trained one by one.

  python -m benchmarks.bench_stacked [--runs=3] [--steps=20] [--warmup_steps=3] [--repeats=5]
      [--measure=step,end_to_end] [--config=experiments/configs/synthetic.py]
      [--config.<field>=<value> ...] [--out=benchmarks/results/bench_stacked.json]

``--runs`` seeds of the config (``config.seed`` + 0, 1, ...), built as the trainer builds them
(``ssd_jax.experiment``). Throughput is images/s summed over the runs:
  sequential  each run's own compiled step, ``--steps`` steps, one run after the other;
  stacked     the stacked step (``experiment.create_stacked_train_step``): ``--steps`` steps that
              each advance every run by one step.
Measured (``--measure``): ``step``, the step alone on device-resident batches (each run its own
batch), and ``end_to_end``, the same with every batch from the runs' augmenting input pipelines
(``train_batches``; stacked: one batch per run, stacked to ``[R, B, ...]``). The two ways run
interleaved ``--repeats`` times (``common.interleave``); the JSON and the table give median and
range of each figure and of the speed-up (stacked over sequential, per repeat). Compile times are
reported separately.
"""

import time

from absl import app, flags
import jax
from ml_collections import config_flags

from benchmarks import common, parts
from ssd_jax import experiment, overrides, train_step

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/synthetic.py", "Experiment config whose seeds are stacked.",
    lock_config=True)
_RUNS = flags.DEFINE_integer("runs", 3, "Runs (seeds) trained together.", lower_bound=2)
_STEPS = flags.DEFINE_integer("steps", 20, "Timed steps per run and repeat.")
_WARMUP = flags.DEFINE_integer("warmup_steps", 3, "Untimed steps before each timing.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Interleaved repeats of both ways.")
_MEASURE = flags.DEFINE_list("measure", ["step", "end_to_end"], "step and/or end_to_end.")
_OUT = flags.DEFINE_string("out", "benchmarks/results/bench_stacked.json", "JSON output.")


def _timed(step_fn, state, batch_fn, steps: int) -> tuple[float, object]:
  """Seconds for ``steps`` steps (after which the state is ready), and the state."""
  start = time.perf_counter()
  state = parts.run_steps(step_fn, state, batch_fn, steps)
  return time.perf_counter() - start, state


def main(argv):
  del argv
  base = _CONFIG.value
  configs = [overrides.apply_overrides(base, {"seed": base.seed + k}) for k in range(_RUNS.value)]
  mesh = experiment.create_mesh()
  trainings = [experiment.create_training(c, mesh) for c in configs]
  states = [t.initial_state(t.config, mesh) for t in trainings]
  pipelines = [experiment.train_batches(t.config, t.data.train) for t in trainings]
  fixed = [train_step.global_batch(next(p), mesh) for p in pipelines]
  stacked_step, _ = experiment.create_stacked_train_step(trainings, mesh)
  stacked_state = train_step.stack(states)
  stacked_fixed = train_step.global_batch(
      train_step.stack_batches([jax.device_get(b) for b in fixed]), mesh, stacked=True)

  compile_s = {}
  start = time.perf_counter()
  for r, (t, b) in enumerate(zip(trainings, fixed)):  # the states are donated: keep the new ones
    states[r] = jax.block_until_ready(t.step_fn(states[r], b)[0])
  compile_s["sequential"] = time.perf_counter() - start
  start = time.perf_counter()
  stacked_state = jax.block_until_ready(stacked_step(stacked_state, stacked_fixed)[0])
  compile_s["stacked"] = time.perf_counter() - start

  images = _RUNS.value * _STEPS.value * base.batch_size
  results = {}
  for measure in _MEASURE.value:
    if measure == "step":
      one = [lambda b=b: b for b in fixed]
      together = lambda: stacked_fixed
    else:
      one = [lambda p=p: train_step.global_batch(next(p), mesh) for p in pipelines]
      together = lambda: train_step.global_batch(
          train_step.stack_batches([next(p) for p in pipelines]), mesh, stacked=True)
    def images_per_s(way: str, one=one, together=together) -> float:
      nonlocal stacked_state  # the steps donate their states: keep the newest
      if way == "stacked":
        _, stacked_state = _timed(stacked_step, stacked_state, together, _WARMUP.value)
        s, stacked_state = _timed(stacked_step, stacked_state, together, _STEPS.value)
        return images / s
      seconds = 0.0
      for r, t in enumerate(trainings):
        _, states[r] = _timed(t.step_fn, states[r], one[r], _WARMUP.value)
        s, states[r] = _timed(t.step_fn, states[r], one[r], _STEPS.value)
        seconds += s
      return images / seconds

    per_way = common.interleave([["sequential", "stacked"]], _REPEATS.value, images_per_s)
    row = common.contest(per_way)
    speedup = row["stacked_ratios"]
    results[measure] = {
        **{f"{way}_images_per_s": row[way] for way in per_way},
        "speedup": row["stacked_ratio"], "raw": per_way}
    print(f"{measure:10s} sequential {results[measure]['sequential_images_per_s']['median']:.1f} "
          f"img/s, stacked {results[measure]['stacked_images_per_s']['median']:.1f} img/s, "
          f"speed-up x{results[measure]['speedup']['median']:.2f} "
          f"(range {min(speedup):.2f}-{max(speedup):.2f}, {_REPEATS.value} repeats)")
  print(f"compile: sequential {compile_s['sequential']:.1f} s ({_RUNS.value} steps), "
        f"stacked {compile_s['stacked']:.1f} s")
  common.write_json(_OUT.value, {
      "model": base.model.name, "batch": base.batch_size, "runs": _RUNS.value,
      "steps": _STEPS.value, "warmup_steps": _WARMUP.value, "repeats": _REPEATS.value,
      "compile_s": compile_s, "results": results})


if __name__ == "__main__":
  app.run(main)
