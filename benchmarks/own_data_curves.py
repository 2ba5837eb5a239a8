"""The curves of ``bench_own_data``: read from a run's TensorBoard records, tabulated, plotted."""

import json
import os
from typing import Any

import numpy as np
import tensorflow as tf

from benchmarks import common

METRICS = ("voc07_map", "voc_map")


def scalars(workdir: str, tags: tuple[str, ...] = METRICS) -> dict[int, dict[str, float]]:
  """``{step: {tag: value, 'wall_time': seconds since the epoch}}`` of the run's TensorBoard
  records of ``tags``."""
  found: dict[int, dict[str, float]] = {}
  for name in sorted(os.listdir(workdir)):
    if not name.startswith("events.out.tfevents"):
      continue
    for event in tf.compat.v1.train.summary_iterator(os.path.join(workdir, name)):
      for value in event.summary.value:
        if value.tag in tags:
          entry = found.setdefault(int(event.step), {})
          entry[value.tag] = float(tf.make_ndarray(value.tensor))
          entry["wall_time"] = max(entry.get("wall_time", 0.0), event.wall_time)
  return found


def previous_runs(path: str, settings: dict[str, Any]) -> list[dict[str, Any]]:
  """The runs of an earlier invocation's JSON, which must have run the same ``settings``
  (config, flags, evaluation period)."""
  with open(path) as f:
    previous = json.load(f)
  ran = {key: previous.get(key) for key in settings}
  if ran != settings:
    raise ValueError(f"{path} ran {ran}, not {settings}: its runs cannot be repeats of these")
  return previous["runs"]


def table(runs: list[dict[str, Any]]) -> str:
  """Markdown: per folder and evaluation step, the median [range] of minutes and mAPs."""
  lines = ["| dataset | step | minutes | VOC07 mAP | VOC mAP |", "|---|---|---|---|---|"]
  for root in dict.fromkeys(r["root"] for r in runs):
    curves = [r["curve"] for r in runs if r["root"] == root]
    for k, point in enumerate(curves[0]):
      cell = lambda key: common.format_spread(*common.median_range([c[k][key] for c in curves
                                                                    if k < len(c)]),
                                              ".1f" if key == "minutes" else ".3f")
      lines.append(f"| {os.path.basename(os.path.normpath(root))} | {point['step']} | "
                   f"{cell('minutes')} | {cell('voc07_map')} | {cell('voc_map')} |")
  return "\n".join(lines)


def plot(runs: list[dict[str, Any]], path: str, title: str) -> None:
  """VOC07 mAP against minutes, one line per folder (the median over repeats, their range
  shaded), to ``path``."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(6.5, 4))
  for root in dict.fromkeys(r["root"] for r in runs):
    curves = [r["curve"] for r in runs if r["root"] == root]
    n = min(len(c) for c in curves)
    minutes = np.median([[p["minutes"] for p in c[:n]] for c in curves], axis=0)
    maps = np.array([[p["voc07_map"] for p in c[:n]] for c in curves])
    line, = ax.plot(minutes, np.median(maps, axis=0), marker="o",
                    label=os.path.basename(os.path.normpath(root)))
    if len(curves) > 1:
      ax.fill_between(minutes, maps.min(0), maps.max(0), color=line.get_color(), alpha=0.2)
  ax.set_xlabel("minutes (wall clock, from the process's start)")
  ax.set_ylabel("VOC07 mAP@0.5 (test split)")
  ax.set_ylim(0, 1)
  ax.grid(alpha=0.3)
  ax.legend()
  ax.set_title(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
