"""Runs a sweep of experiments one after the other and tabulates them (``ssd_jax.sweep``).

  python -m experiments.sweep --config=experiments/configs/ablation_table2.py \\
      --workdir=runs/table2
  # a quick look: every run shortened, only two of them
  python -m experiments.sweep --config=experiments/configs/ablation_table3.py \\
      --workdir=/tmp/table3 --set=num_train_steps=50 --set=data.num_eval_examples=50 \\
      --only=p3-p7,p4-p7
  # every run with 3 seeds: mean ± std, and which runs differ from the first beyond the spread;
  # --stack trains the seeds of a run (and any runs differing only in lr, prior scales, ...)
  # together in one compiled step
  python -m experiments.sweep --config=experiments/configs/ablation_table2.py \\
      --workdir=runs/table2 --seeds=3 --stack

The config file defines ``get_config()`` (the base) and ``get_sweep()`` (``[(run_name,
{dotted.key: value}), ...]``). Each run trains in ``<workdir>/<run_name>`` (other seeds in
``<workdir>/<run_name>-seed<s>``); the tables go to ``<workdir>/results.{md,csv,png}``
(``ssd_jax.sweep_report``). Rerun the same command to resume an interrupted sweep.
"""

from absl import app, flags

from experiments import cli
from ssd_jax import overrides, sweep, sweep_report

_CONFIG = flags.DEFINE_string("config", None, "Sweep config file (get_config and get_sweep).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Each run goes to <workdir>/<run_name>.")
_ONLY = flags.DEFINE_list("only", [], "Train only these runs (comma-separated names).")
_SET = flags.DEFINE_multi_string("set", [], "dotted.key=value applied to the base config of "
                                 "every run (a Python literal, else a string); repeatable.")
_SEEDS = flags.DEFINE_integer("seeds", 1, "Train every run with this many seeds (config.seed + "
                              "0, 1, ...); the tables give mean and spread.", lower_bound=1)
_STACK = flags.DEFINE_bool("stack", False, "Train runs that differ only in seed, prior scales, "
                           "matching threshold, loss settings or learning rate together, in one "
                           "compiled step (ssd_jax.train.train_stacked).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  cli.quiet_orbax()
  cli.run_and_exit(_run)


def _run() -> None:
  base, runs = sweep.load_sweep(_CONFIG.value)
  base = overrides.apply_overrides(base, dict(overrides.parse_assignment(s) for s in _SET.value))
  rows = sweep.run_sweep(base, runs, _WORKDIR.value, only=_ONLY.value, seeds=_SEEDS.value,
                         stack=_STACK.value)
  paths = sweep_report.write_results(rows, _WORKDIR.value)
  with open(paths["md"]) as f:
    print(f.read())
  print(f"Wrote {', '.join(paths.values())}")


if __name__ == "__main__":
  app.run(main)
