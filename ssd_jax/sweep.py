"""Sweeps: run one base config under several sets of overrides and tabulate the final metrics.

A sweep config file (e.g. ``experiments/configs/ablation_table2.py``) defines ``get_config()``,
the base ConfigDict, and ``get_sweep()``, a list of ``(run_name, {dotted.key: value})``.
``experiments/sweep.py`` trains every run in ``workdir/<run_name>`` one after the other and
writes ``results.md``, ``results.csv`` and ``results.png`` to ``workdir``::

  python -m experiments.sweep --config=experiments/configs/ablation_table2.py \\
      --workdir=runs/table2 --set=num_train_steps=50

With ``--seeds=N`` every run trains N times, with ``config.seed`` plus 0 .. N-1, in
``workdir/<run_name>`` (the first seed, as without ``--seeds``) and ``workdir/<run_name>-seed<s>``;
the tables give each metric's mean and spread over the seeds (:mod:`ssd_jax.sweep_report`), so
raising N later reuses the runs already trained.

Rerunning the same command resumes an interrupted sweep: finished runs (``metrics.json`` at the
final step) are skipped, an unfinished one resumes from its last checkpoint. Each run directory
keeps the ``config.json`` it was trained with; rerunning with a different config there is an
error rather than a silently mixed run. Sweeps run in one process; train a multi-host run with
``experiments/main.py``.
"""

import importlib.util
import json
import math
import os
import time
from typing import Any, Callable, Mapping, Optional, Sequence

from absl import logging
import ml_collections

from ssd_jax import overrides as overrides_lib

Run = tuple[str, Mapping[str, Any]]
# The final metrics a row carries (NaN where a run's evaluation did not compute one): the mAPs,
# AP by object size and recall by object shape (ssd_jax.metrics), and how well the priors cover
# the test boxes (ssd_jax.evaluation.Evaluator.prior_coverage).
METRICS = ("voc07_map", "voc_map")
BREAKDOWN = ("voc07_ap_small", "voc07_ap_medium", "voc07_ap_large", "recall_ar_1to3",
             "recall_ar_1to2", "recall_ar_1to1", "recall_ar_2to1", "recall_ar_3to1",
             "prior_recall", "prior_mean_best_iou")


def load_sweep(path: str) -> tuple[ml_collections.ConfigDict, list[Run]]:
  """``(get_config(), get_sweep())`` of a sweep config file, with the runs validated."""
  spec = importlib.util.spec_from_file_location("_sweep_config", path)
  if not os.path.isfile(path) or spec is None:
    raise ValueError(f"sweep config {path!r} is not a Python file")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  for fn in ("get_config", "get_sweep"):
    if not callable(getattr(module, fn, None)):
      raise ValueError(f"sweep config {path} must define {fn}()")
  return module.get_config(), check_runs(module.get_sweep())


def check_runs(runs: Sequence[Run]) -> list[Run]:
  """Raises ValueError unless the runs have distinct, path-safe names and dict overrides."""
  seen = set()
  for i, run in enumerate(runs):
    if not (isinstance(run, tuple) and len(run) == 2 and isinstance(run[1], Mapping)):
      raise ValueError(f"sweep run {i} must be (name, {{dotted.key: value}}), got {run!r}")
    name = run[0]
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
      raise ValueError(f"sweep run {i}: name {name!r} must be a non-empty directory name")
    if name in seen:
      raise ValueError(f"sweep run name {name!r} appears twice")
    seen.add(name)
  return list(runs)


def select_runs(runs: Sequence[Run], only: Optional[Sequence[str]]) -> list[Run]:
  """The runs named in ``only`` (all when empty), in sweep order."""
  if not only:
    return list(runs)
  names = [name for name, _ in runs]
  unknown = [n for n in only if n not in names]
  if unknown:
    raise ValueError(f"--only: no runs named {unknown}; the sweep has {names}")
  return [run for run in runs if run[0] in only]


# ---------------------------------------------------------------------------------------------
# Running.
# ---------------------------------------------------------------------------------------------
def _config_differences(config: ml_collections.ConfigDict, run_dir: str) -> Optional[list[str]]:
  """Keys where ``run_dir/config.json`` differs from ``config``; None when there is no file."""
  path = os.path.join(run_dir, "config.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return overrides_lib.config_differences(json.load(f), config)


def _check_same_config(config: ml_collections.ConfigDict, run_dir: str) -> None:
  """Writes ``run_dir/config.json``, or raises ValueError if it holds a different config."""
  changed = _config_differences(config, run_dir)
  if changed:
    raise ValueError(
        f"{run_dir} was trained with a different config ({', '.join(changed[:8])} differ); "
        "use another --workdir or delete that run directory to retrain it")
  if changed is None:
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))


def finished_metrics(run_dir: str, num_train_steps: int) -> Optional[dict[str, Any]]:
  """The run's ``metrics.json`` if it was written at the run's last step, else None: the
  ``num_train_steps`` it records (the trainer's, with a length in epochs resolved), or else the
  argument."""
  path = os.path.join(run_dir, "metrics.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    metrics = json.load(f)
  last = metrics.get("num_train_steps", num_train_steps)
  return metrics if metrics.get("step") == last else None


def seed_dir(name: str, seed_index: int, seed: int) -> str:
  """The directory name of a run's ``seed_index``-th seed (``seed`` = its ``config.seed``)."""
  return name if seed_index == 0 else f"{name}-seed{seed}"


def run_sweep(base_config: ml_collections.ConfigDict, runs: Sequence[Run], workdir: str,
              only: Optional[Sequence[str]] = None,
              train_fn: Optional[Callable[..., dict[str, Any]]] = None,
              seeds: int = 1, stack: bool = False,
              stack_fn: Optional[Callable[..., list[dict[str, Any]]]] = None
              ) -> list[dict[str, Any]]:
  """Trains and evaluates the runs in turn, each in ``workdir/<name>``; returns their rows.

  A run whose ``metrics.json`` is already at ``num_train_steps`` is not retrained (its metrics
  and recorded train time are read back); any other run calls ``train_fn`` (default
  ``ssd_jax.train.train_and_evaluate``), which resumes from the run's last checkpoint.

  Args:
    base_config: the config every run starts from.
    runs: ``(name, {dotted.key: value})`` pairs; all are validated against the base first.
    workdir: the sweep's directory.
    only: names of the runs to train (None or empty: all). Runs left out still get a row when
      they are already finished, so the table shows the whole sweep so far.
    train_fn: ``(config, workdir) -> metrics``, for tests.
    seeds: trainings per run, with ``config.seed`` + 0 .. ``seeds - 1`` (the run's own seed
      first), in the directories of :func:`seed_dir`.
    stack: train together (``stack_fn``) the unfinished trainings that differ only in
      ``experiment.STACKABLE`` fields (e.g. the seeds of a run) and stand at the same checkpoint
      step; each still writes its own run directory.
    stack_fn: ``(configs, workdirs) -> metrics list`` (default ``ssd_jax.train.train_stacked``),
      for tests.

  Returns:
    One dict per run and seed, in sweep order: ``run`` (the name), ``seed``, ``run_dir``,
    ``overrides`` (the run's dict), ``step``, each of :data:`METRICS` and :data:`BREAKDOWN`
    (NaN when not computed), ``train_time_s`` (wall time of ``train_fn``, with compilation and
    evaluation, summed over the calls of a resumed run; a run trained in a stack of ``R`` counts
    ``1/R`` of the stack's time; a segment ended by SIGKILL is lost), ``skipped`` and ``metrics``
    (the full final metrics).
  """
  if train_fn is None or (stack and stack_fn is None):
    from ssd_jax import train  # pylint: disable=g-import-not-at-top  (keeps this module light)
    train_fn = train_fn or train.train_and_evaluate
    stack_fn = stack_fn or train.train_stacked
  if seeds < 1:
    raise ValueError(f"seeds must be >= 1, got {seeds}")
  runs = check_runs(runs)
  selected = {name for name, _ in select_runs(runs, only)}
  # Every run's overrides are checked before the first one trains.
  trainings = []
  for name, overrides in runs:
    config = overrides_lib.apply_overrides(base_config, overrides)
    for k in range(seeds):
      seeded = overrides_lib.apply_overrides(config, {"seed": config.seed + k})
      trainings.append({"run": name, "overrides": dict(overrides), "config": seeded,
                        "run_dir": seed_dir(name, k, seeded.seed)})
  check_runs([(t["run_dir"], {}) for t in trainings])  # e.g. a run named "a-seed1" next to "a"
  kept = []
  for t in trainings:
    path = os.path.join(workdir, t["run_dir"])
    t["metrics"] = finished_metrics(path, t["config"].num_train_steps)
    if t["run"] not in selected and (t["metrics"] is None
                                     or _config_differences(t["config"], path)):
      continue  # not asked for, and not a finished run of this sweep
    _check_same_config(t["config"], path)
    t["skipped"] = t["metrics"] is not None
    if t["skipped"]:
      logging.info("Sweep run %s is finished (%s): skipping.", t["run"], path)
    kept.append(t)
  pending = [t for t in kept if not t["skipped"]]
  for group in (_stack_groups(pending, workdir) if stack else [[t] for t in pending]):
    _train_group(group, workdir, train_fn, stack_fn)
  return [{"run": t["run"], "seed": t["config"].seed, "run_dir": t["run_dir"],
           "overrides": t["overrides"], "step": t["metrics"].get("step"),
           **{m: float(t["metrics"].get(m, math.nan)) for m in METRICS + BREAKDOWN},
           "train_time_s": _recorded_seconds(os.path.join(workdir, t["run_dir"])),
           "skipped": t["skipped"], "metrics": t["metrics"]} for t in kept]


def _stack_groups(pending: list[dict[str, Any]], workdir: str) -> list[list[dict[str, Any]]]:
  """The trainings in groups that can train together: configs that differ only in
  ``experiment.STACKABLE`` fields, at the same checkpoint step (None: fresh)."""
  from ssd_jax import checkpoints, experiment  # pylint: disable=g-import-not-at-top
  groups: list[list[dict[str, Any]]] = []
  steps = [checkpoints.latest_step(os.path.join(workdir, t["run_dir"])) for t in pending]
  group_steps: list[Optional[int]] = []
  for t, step in zip(pending, steps):
    for group, group_step in zip(groups, group_steps):
      if group_step == step and not experiment.unstackable_differences(group[0]["config"],
                                                                         t["config"]):
        group.append(t)
        break
    else:
      groups.append([t])
      group_steps.append(step)
  return groups


def _recorded_seconds(run_dir: str) -> float:
  path = os.path.join(run_dir, "train_time.json")
  if not os.path.exists(path):
    return math.nan
  with open(path) as f:
    return json.load(f)["train_time_s"]


def _train_group(group: list[dict[str, Any]], workdir: str, train_fn: Callable,
                 stack_fn: Optional[Callable]) -> None:
  """Trains one run (``train_fn``) or several together (``stack_fn``); sets their metrics and
  adds the wall time (its share of it, in a stack) to each ``train_time.json``."""
  paths = [os.path.join(workdir, t["run_dir"]) for t in group]
  for t in group:
    logging.info("Sweep run %s (seed %d): %s%s", t["run"], t["config"].seed, t["overrides"],
                 f", trained together with {len(group) - 1} more" if len(group) > 1 else "")
  start = time.perf_counter()
  try:
    if len(group) == 1:
      results = [train_fn(group[0]["config"], paths[0])]
    else:
      results = stack_fn([t["config"] for t in group], paths)
  finally:  # also after SIGTERM (SystemExit) or Ctrl-C: a resumed run adds to its time
    share = (time.perf_counter() - start) / len(group)
    for path in paths:
      seconds = _recorded_seconds(path)
      with open(os.path.join(path, "train_time.json"), "w") as f:
        json.dump({"train_time_s": (0.0 if math.isnan(seconds) else seconds) + share}, f)
  for t, metrics in zip(group, results):
    t["metrics"] = metrics
