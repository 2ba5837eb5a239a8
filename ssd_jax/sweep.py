"""Sweeps: run one base config under several sets of overrides and tabulate the final metrics.

A sweep config file (e.g. ``experiments/configs/ablation_table2.py``) defines ``get_config()``,
the base ConfigDict, and ``get_sweep()``, a list of ``(run_name, {dotted.key: value})``.
``experiments/sweep.py`` trains every run in ``workdir/<run_name>`` one after the other and
writes ``results.md``, ``results.csv`` and ``results.png`` to ``workdir``::

  python -m experiments.sweep --config=experiments/configs/ablation_table2.py \\
      --workdir=runs/table2 --set=num_train_steps=50

Rerunning the same command resumes an interrupted sweep: finished runs (``metrics.json`` at the
final step) are skipped, an unfinished one resumes from its last checkpoint. Each run directory
keeps the ``config.json`` it was trained with; rerunning with a different config there is an
error rather than a silently mixed run. Sweeps run in one process; train a multi-host run with
``experiments/main.py``.
"""

import csv
import importlib.util
import json
import math
import os
import time
from typing import Any, Callable, Mapping, Optional, Sequence

from absl import logging
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import ml_collections

from ssd_jax import overrides as overrides_lib

Run = tuple[str, Mapping[str, Any]]
METRICS = ("voc07_map", "voc_map")


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
def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  if not isinstance(tree, dict):
    return {prefix: tree}
  out = {}
  for k, v in tree.items():
    out.update(_flatten(v, f"{prefix}.{k}" if prefix else k))
  return out


def _config_differences(config: ml_collections.ConfigDict, run_dir: str) -> Optional[list[str]]:
  """Keys where ``run_dir/config.json`` differs from ``config``; None when there is no file."""
  path = os.path.join(run_dir, "config.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    old = _flatten(json.load(f))
  new = _flatten(json.loads(config.to_json_best_effort()))
  # Compared as JSON text so that NaN equals NaN.
  return sorted(k for k in old.keys() | new.keys()
                if json.dumps(old.get(k)) != json.dumps(new.get(k)))


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


def run_sweep(base_config: ml_collections.ConfigDict, runs: Sequence[Run], workdir: str,
              only: Optional[Sequence[str]] = None,
              train_fn: Optional[Callable[..., dict[str, Any]]] = None) -> list[dict[str, Any]]:
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

  Returns:
    Dicts with ``run``, ``overrides`` (the run's dict), ``step``, ``voc07_map``, ``voc_map``
    (NaN when not computed), ``train_time_s`` (wall time of ``train_fn``, with compilation and
    evaluation, summed over the calls of a resumed run; a segment ended by SIGKILL is lost),
    ``skipped`` and ``metrics`` (the full final metrics).
  """
  if train_fn is None:
    from ssd_jax import train  # pylint: disable=g-import-not-at-top  (keeps this module light)
    train_fn = train.train_and_evaluate
  runs = check_runs(runs)
  selected = {name for name, _ in select_runs(runs, only)}
  # Every run's overrides are checked before the first one trains.
  configs = [overrides_lib.apply_overrides(base_config, changes) for _, changes in runs]
  rows = []
  for (name, overrides), config in zip(runs, configs):
    run_dir = os.path.join(workdir, name)
    metrics = finished_metrics(run_dir, config.num_train_steps)
    if name not in selected and (metrics is None or _config_differences(config, run_dir)):
      continue  # not asked for, and not a finished run of this sweep
    _check_same_config(config, run_dir)
    timing_path = os.path.join(run_dir, "train_time.json")
    seconds = math.nan
    if os.path.exists(timing_path):
      with open(timing_path) as f:
        seconds = json.load(f)["train_time_s"]
    skipped = metrics is not None
    if skipped:
      logging.info("Sweep run %s is finished (%s): skipping.", name, run_dir)
    else:
      logging.info("Sweep run %s: %s", name, dict(overrides))
      start = time.perf_counter()
      try:
        metrics = train_fn(config, run_dir)
      finally:  # also after SIGTERM (SystemExit) or Ctrl-C: a resumed run adds to its time
        seconds = (0.0 if math.isnan(seconds) else seconds) + time.perf_counter() - start
        with open(timing_path, "w") as f:
          json.dump({"train_time_s": seconds}, f)
    rows.append({"run": name, "overrides": dict(overrides), "step": metrics.get("step"),
                 **{m: float(metrics.get(m, math.nan)) for m in METRICS},
                 "train_time_s": seconds, "skipped": skipped, "metrics": metrics})
  return rows


# ---------------------------------------------------------------------------------------------
# Reporting.
# ---------------------------------------------------------------------------------------------
def _format(value: Any) -> str:
  if isinstance(value, float):
    return f"{value:g}"
  if isinstance(value, (tuple, list)):
    return "(" + ", ".join(_format(v) for v in value) + ("," if len(value) == 1 else "") + ")"
  if isinstance(value, Mapping):
    return "{" + ", ".join(f"{k}: {_format(v)}" for k, v in value.items()) + "}"
  return str(value)


def results_table(rows: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
  """Header and string cells: run, one column per override key (blank = base value), the two
  mAPs in percent and the train time in minutes."""
  keys = list(dict.fromkeys(k for row in rows for k in row["overrides"]))
  header = ["run", *keys, "VOC07 mAP (%)", "VOC mAP (%)", "train time (min)"]
  pct = lambda v: "-" if math.isnan(v) else f"{100 * v:.1f}"
  cells = [[row["run"], *(_format(row["overrides"][k]) if k in row["overrides"] else ""
                          for k in keys),
            pct(row["voc07_map"]), pct(row["voc_map"]),
            "-" if math.isnan(row["train_time_s"]) else f"{row['train_time_s'] / 60:.1f}"]
           for row in rows]
  return header, cells


def write_results(rows: Sequence[dict[str, Any]], workdir: str) -> dict[str, str]:
  """Writes ``results.md``, ``results.csv`` and ``results.png`` to ``workdir``; returns the
  paths by extension. The CSV has raw numbers (mAP in [0, 1], seconds)."""
  if not rows:
    raise ValueError("write_results: no rows")
  os.makedirs(workdir, exist_ok=True)
  paths = {ext: os.path.join(workdir, f"results.{ext}") for ext in ("md", "csv", "png")}
  header, cells = results_table(rows)
  with open(paths["md"], "w") as f:
    f.write("| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n")
    f.writelines("| " + " | ".join(c.replace("|", "\\|") for c in line) + " |\n"
                 for line in cells)
  keys = header[1:-3]
  with open(paths["csv"], "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["run", *keys, "step", *METRICS, "train_time_s"])
    for row, line in zip(rows, cells):
      writer.writerow([row["run"], *line[1:1 + len(keys)], row["step"],
                       *(row[m] for m in METRICS), row["train_time_s"]])

  fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(rows), 3.6))
  width = 0.8 / len(METRICS)
  for j, (metric, label) in enumerate(zip(METRICS, ("VOC07 11-point", "VOC area"))):
    xs = [i + (j - (len(METRICS) - 1) / 2) * width for i in range(len(rows))]
    values = [100 * row[metric] for row in rows]
    bars = ax.bar(xs, values, width, label=f"{label} mAP")
    ax.bar_label(bars, fmt="%.1f", fontsize=7)
  ax.set_xticks(range(len(rows)), [row["run"] for row in rows], rotation=30, ha="right")
  ax.set_ylabel("mAP (%)")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(paths["png"], dpi=100)
  plt.close(fig)
  return paths
