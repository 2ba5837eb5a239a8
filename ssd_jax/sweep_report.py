"""A sweep's results: each metric's mean and spread over seeds, as tables, a CSV and a plot.

:func:`ssd_jax.sweep.run_sweep` returns one row per run and seed; :func:`write_results` groups
them by run (:func:`aggregate`) and writes to the sweep's directory:

  * ``results.md``: the mAPs and train time per run, then AP by object size, recall by object
    shape (:mod:`ssd_jax.metrics`) and the priors' coverage of the test boxes. With several
    seeds a cell reads ``mean ± std``, and ``*`` marks a run whose mean differs from the first
    run's by more than the seeds' spread explains (Welch's t-test, p < 0.05: with 3 seeds per
    run and equal spreads, a gap of 2.3 standard deviations; the coverage, which does not depend
    on the seed, is marked wherever it differs).
  * ``results.csv``: one line per run and seed, raw numbers (mAP in [0, 1], seconds).
  * ``results.png``: the mAPs and AP by size, bars at the mean with the standard deviation.
"""

import csv
import dataclasses
import math
import os
from typing import Any, Mapping, Sequence
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np
from scipy import stats as scipy_stats

from ssd_jax.sweep import BREAKDOWN, METRICS

SIGNIFICANCE = 0.05
LABELS = {"voc07_map": "VOC07 mAP", "voc_map": "VOC mAP", "voc07_ap_small": "AP small",
          "voc07_ap_medium": "AP medium", "voc07_ap_large": "AP large",
          "recall_ar_1to3": "recall 1:3", "recall_ar_1to2": "recall 1:2",
          "recall_ar_1to1": "recall 1:1", "recall_ar_2to1": "recall 2:1",
          "recall_ar_3to1": "recall 3:1", "prior_recall": "prior coverage",
          "prior_mean_best_iou": "prior mean IoU"}


@dataclasses.dataclass(frozen=True)
class SeedStats:
  """One metric over a run's seeds; NaN values (not computed) are left out.

  Attributes:
    values: the finite values, in seed order.
    mean: their mean (NaN when there are none).
    std: their sample standard deviation (``ddof=1``; NaN below two values).
    ci95: half-width of the 95% t-interval of the mean (NaN below two values).
  """
  values: tuple[float, ...]
  mean: float
  std: float
  ci95: float

  @property
  def n(self) -> int:
    return len(self.values)


def seed_stats(values: Sequence[float]) -> SeedStats:
  """Mean, standard deviation and 95% interval of a metric's per-seed ``values``."""
  finite = tuple(float(v) for v in values if not math.isnan(v))
  if len(finite) < 2:
    return SeedStats(finite, finite[0] if finite else math.nan, math.nan, math.nan)
  std = float(np.std(finite, ddof=1))
  half = float(scipy_stats.t.ppf(0.975, len(finite) - 1)) * std / math.sqrt(len(finite))
  return SeedStats(finite, float(np.mean(finite)), std, half)


def differs(base: SeedStats, other: SeedStats, alpha: float = SIGNIFICANCE) -> bool:
  """Whether two runs' means differ beyond their seeds' spread: Welch's t-test (unequal
  variances) at level ``alpha``. False when either run has fewer than two values, or when no
  seed-to-seed variation at all leaves the test undefined."""
  if base.n < 2 or other.n < 2:
    return False
  if base.std == 0 and other.std == 0:
    return base.mean != other.mean  # exact: any gap exceeds zero spread
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)
    p = scipy_stats.ttest_ind(base.values, other.values, equal_var=False).pvalue
  return bool(p < alpha)


def aggregate(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
  """Rows of :func:`ssd_jax.sweep.run_sweep` grouped by run, in sweep order: ``run``,
  ``overrides``, ``seeds`` and ``stats`` (metric or ``train_time_s`` -> :class:`SeedStats`)."""
  groups: dict[str, list[Mapping[str, Any]]] = {}
  for row in rows:
    groups.setdefault(row["run"], []).append(row)
  return [{"run": name, "overrides": group[0]["overrides"],
           "seeds": [row.get("seed") for row in group],
           "stats": {key: seed_stats([row.get(key, math.nan) for row in group])
                     for key in (*METRICS, *BREAKDOWN, "train_time_s")}}
          for name, group in groups.items()]


def _format(value: Any) -> str:
  if isinstance(value, float):
    return f"{value:g}"
  if isinstance(value, (tuple, list)):
    return "(" + ", ".join(_format(v) for v in value) + ("," if len(value) == 1 else "") + ")"
  if isinstance(value, Mapping):
    return "{" + ", ".join(f"{k}: {_format(v)}" for k, v in value.items()) + "}"
  return str(value)


def _cell(stats: SeedStats, scale: float, digits: int, marked: bool) -> str:
  """``mean`` (one seed) or ``mean ± std`` (several), scaled; ``-`` when not computed."""
  if not stats.n:
    return "-"
  text = f"{scale * stats.mean:.{digits}f}"
  if stats.n > 1:
    text += f" ± {scale * stats.std:.{digits}f}"
  return text + (" *" if marked else "")


def results_table(rows: Sequence[Mapping[str, Any]], breakdown: bool = False
                  ) -> tuple[list[str], list[list[str]]]:
  """Header and string cells, one line per run (its seeds aggregated).

  The main table (``breakdown=False``): run, one column per override key (blank = base value),
  ``seeds`` (when any run has more than one), the two mAPs in percent and the train time in
  minutes (mean per seed). ``breakdown=True``: run, then AP by size, recall by aspect ratio
  and the priors' coverage, in percent.
  ``*`` marks the metric cells that differ from the first run's (:func:`differs`).
  """
  runs = aggregate(rows)
  metrics = BREAKDOWN if breakdown else METRICS
  keys = [] if breakdown else list(dict.fromkeys(k for run in runs for k in run["overrides"]))
  several = not breakdown and any(len(run["seeds"]) > 1 for run in runs)
  header = ["run", *keys, *(["seeds"] if several else []),
            *(f"{LABELS[m]} (%)" for m in metrics),
            *([] if breakdown else ["train time (min)"])]
  base = runs[0]["stats"]
  cells = []
  for i, run in enumerate(runs):
    line = [run["run"], *(_format(run["overrides"][k]) if k in run["overrides"] else ""
                          for k in keys)]
    if several:
      line.append(str(len(run["seeds"])))
    line += [_cell(run["stats"][m], 100, 1, i > 0 and differs(base[m], run["stats"][m]))
             for m in metrics]
    if not breakdown:  # the mean per seed
      seconds = run["stats"]["train_time_s"]
      line.append(f"{seconds.mean / 60:.1f}" if seconds.n else "-")
    cells.append(line)
  return header, cells


def _markdown(header: Sequence[str], cells: Sequence[Sequence[str]]) -> str:
  return ("| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n"
          + "".join("| " + " | ".join(c.replace("|", "\\|") for c in line) + " |\n"
                    for line in cells))


def write_results(rows: Sequence[Mapping[str, Any]], workdir: str) -> dict[str, str]:
  """Writes ``results.md``, ``results.csv`` and ``results.png`` to ``workdir``; returns the
  paths by extension."""
  if not rows:
    raise ValueError("write_results: no rows")
  os.makedirs(workdir, exist_ok=True)
  paths = {ext: os.path.join(workdir, f"results.{ext}") for ext in ("md", "csv", "png")}
  runs = aggregate(rows)
  has_breakdown = any(run["stats"][m].n for run in runs for m in BREAKDOWN)
  text = _markdown(*results_table(rows))
  most = max(len(run["seeds"]) for run in runs)
  if most > 1:
    text += (f"\nMean ± standard deviation over the seeds (up to {most} per run). `*`: differs "
             f"from `{runs[0]['run']}` beyond the seed-to-seed spread (Welch's t-test, "
             f"p < {SIGNIFICANCE}).\n")
  if has_breakdown:
    text += ("\nBy object size (VOC07 AP, COCO's size ranges on images scaled to a 640-px "
             "longer side), object shape (recall by w:h) and the priors' coverage of the test "
             "boxes (the share whose best prior reaches the matching IoU, and that best IoU):"
             "\n\n"
             + _markdown(*results_table(rows, breakdown=True)))
  with open(paths["md"], "w") as f:
    f.write(text)

  keys = list(dict.fromkeys(k for row in rows for k in row["overrides"]))
  with open(paths["csv"], "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["run", "seed", *keys, "step", *METRICS, *BREAKDOWN, "train_time_s"])
    for row in rows:
      writer.writerow([row["run"], row.get("seed"),
                       *(_format(row["overrides"][k]) if k in row["overrides"] else ""
                         for k in keys),
                       row["step"], *(row.get(m, math.nan) for m in (*METRICS, *BREAKDOWN)),
                       row["train_time_s"]])
  _plot(runs, paths["png"], has_breakdown)
  return paths


def _plot(runs: Sequence[Mapping[str, Any]], path: str, has_breakdown: bool) -> None:
  """Grouped bars (mean, ± std) per run: the mAPs, and AP by size when computed."""
  panels = [METRICS] + ([BREAKDOWN[:3]] if has_breakdown else [])
  fig, axes = plt.subplots(1, len(panels), figsize=(len(panels) * (1.2 + 1.1 * len(runs)), 3.6),
                           squeeze=False)
  for ax, metrics in zip(axes[0], panels):
    width = 0.8 / len(metrics)
    for j, metric in enumerate(metrics):
      xs = [i + (j - (len(metrics) - 1) / 2) * width for i in range(len(runs))]
      stats = [run["stats"][metric] for run in runs]
      errors = [0.0 if math.isnan(s.std) else 100 * s.std for s in stats]
      bars = ax.bar(xs, [100 * s.mean for s in stats], width, yerr=errors, capsize=2,
                    label=LABELS[metric])
      ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(range(len(runs)), [run["run"] for run in runs], rotation=30, ha="right")
    ax.set_ylabel("%")
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
