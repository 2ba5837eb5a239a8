r"""mAP against minutes: the own-data recipe trained on dataset folders, as a user runs it.

  python -m benchmarks.bench_own_data DIR [DIR ...] [--repeats=1] [--eval_every_steps=250]
      [--config=experiments/configs/own_data.py] [--workdir_root=/tmp/bench_own_data]
      [--out=benchmarks/results/bench_own_data.json] [--png=benchmarks/results/bench_own_data.png]
      [--previous=JSON] [-- --config.<field>=<value> ...]

Each DIR is trained by ``python -m experiments.main --config=CONFIG --config.data.root=DIR`` in
its own process (the recipe users run, only the folder given), with an evaluation every
``--eval_every_steps`` steps on the reported split (the folder's test split or the hold-out).
Minutes are wall clock from the process's launch (imports, data reading, compilation and the
evaluations included) to the evaluation's TensorBoard record. ``--repeats`` runs every folder
that many times, interleaved (A B A B ...), each in a fresh workdir, repeat ``r`` with
``--config.seed=r`` (initialization, augmentation and order; the hold-out split's seed stays):
the spread of mAP is the recipe's over seeds, that of minutes also the machine's.
``--previous`` adds the runs of an earlier invocation (more repeats, run later). Writes a JSON
of every curve, a markdown table (the median and range over repeats at each evaluation) to
stdout, and a PNG of VOC07 mAP against minutes, one line per folder.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from absl import app, flags

from benchmarks import common, own_data_curves

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_REPEATS = flags.DEFINE_integer("repeats", 1, "Runs of each folder, interleaved.")
_EVAL_EVERY = flags.DEFINE_integer("eval_every_steps", 250, "Steps between evaluations.")
_CONFIG = flags.DEFINE_string("config", "experiments/configs/own_data.py", "Experiment config.")
_WORKDIRS = flags.DEFINE_string("workdir_root", None, "Where the runs go (default: a temporary "
                                "folder, removed afterwards).")
_OUT = flags.DEFINE_string("out", "benchmarks/results/bench_own_data.json", "JSON output.")
_PNG = flags.DEFINE_string("png", "benchmarks/results/bench_own_data.png", "Plot output.")
_PREVIOUS = flags.DEFINE_string("previous", "", "A JSON this benchmark wrote on this machine, "
                                "with the same config and flags: its runs join this one's (more "
                                "repeats, later).")


def train_curve(root: str, workdir: str, extra: list[str]) -> dict[str, Any]:
  """One run of the recipe on ``root``: its evaluations as ``(step, minutes, voc07, voc)``."""
  command = [sys.executable, "-m", "experiments.main", f"--config={_CONFIG.value}",
             f"--config.data.root={os.path.abspath(root)}", f"--workdir={workdir}",
             f"--config.eval.every_steps={_EVAL_EVERY.value}", *extra]
  start = time.time()
  result = subprocess.run(command, cwd=_ROOT, capture_output=True, text=True)
  seconds = time.time() - start
  if result.returncode:
    raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
  points = own_data_curves.scalars(workdir)
  with open(os.path.join(workdir, "metrics.json")) as f:
    final = json.load(f)
  return {"root": root, "seconds": seconds, "num_test_images": final["num_images"],
          "curve": [{"step": step, "minutes": (p["wall_time"] - start) / 60,
                     **{m: p[m] for m in own_data_curves.METRICS}}
                    for step, p in sorted(points.items())]}


def main(argv: list[str]) -> None:
  roots = [a for a in argv[1:] if not a.startswith("--")]
  extra = [a for a in argv[1:] if a.startswith("--")]
  if not roots:
    raise app.UsageError("give one or more dataset folders")
  workdir_root = _WORKDIRS.value or tempfile.mkdtemp(prefix="bench_own_data_")
  settings = {"config": _CONFIG.value, "flags": extra, "eval_every_steps": _EVAL_EVERY.value}
  runs = own_data_curves.previous_runs(_PREVIOUS.value, settings) if _PREVIOUS.value else []

  def measure(root: str) -> None:
    repeat = sum(r["root"] == root for r in runs)
    workdir = os.path.join(workdir_root, f"{os.path.basename(os.path.normpath(root))}_{repeat}")
    runs.append({**train_curve(root, workdir, [*extra, f"--config.seed={repeat}"]),
                 "repeat": repeat})
    print(f"{root} #{repeat}: {runs[-1]['curve'][-1]}", flush=True)

  common.interleave([roots], _REPEATS.value, measure)
  print(own_data_curves.table(runs))
  common.write_json(_OUT.value, {**settings, "runs": runs})
  own_data_curves.plot(runs, _PNG.value, f"{os.path.basename(_CONFIG.value)} on "
                       f"{common.machine()['cpu']}, {os.cpu_count()} cores")


if __name__ == "__main__":
  app.run(main)
