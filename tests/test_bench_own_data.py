"""benchmarks/bench_own_data.py: the recipe on folders, mAP against minutes, seeds as repeats."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests import fixtures

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYOUTS = os.path.join(ROOT, "tests", "data", "layouts")
# Four steps of batch 2 at a small input, an evaluation every two.
FLAGS = ("--config.num_train_steps=4", "--config.batch_size=2", "--config.model.image_size=64",
         "--config.model.conv_impl=xla", "--config.eval.batch_size=2",
         "--config.data.max_boxes=8")


def bench(tmp_path, *args):
  out, png = tmp_path / "bench.json", tmp_path / "bench.png"
  result = subprocess.run(
      [sys.executable, "-m", "benchmarks.bench_own_data", "--eval_every_steps=2", *args,
       f"--workdir_root={tmp_path / 'runs'}", f"--out={out}", f"--png={png}", "--", *FLAGS],
      cwd=ROOT, capture_output=True, text=True, env=fixtures.subprocess_env())
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads(out.read_text()), png, result.stdout


def test_curves_and_repeats_added_later(tmp_path):
  folder = f"{LAYOUTS}/yolo_labelimg"
  payload, png, stdout = bench(tmp_path, folder)
  assert png.stat().st_size > 0 and payload["machine"]["cpu"]
  (run,) = payload["runs"]
  assert run["root"] == folder and run["repeat"] == 0
  assert [p["step"] for p in run["curve"]] == [2, 4]
  minutes = [p["minutes"] for p in run["curve"]]
  assert 0 < minutes[0] < minutes[1] <= run["seconds"] / 60
  assert all(0 <= p["voc07_map"] <= 1 and 0 <= p["voc_map"] <= 1 for p in run["curve"])
  assert run["num_test_images"] == 1  # the folder has no splits: its hold-out was evaluated
  # The last evaluation is the run's metrics.json.
  final = json.loads((tmp_path / "runs" / "yolo_labelimg_0" / "metrics.json").read_text())
  assert run["curve"][-1]["voc07_map"] == pytest.approx(final["voc07_map"])
  assert "| yolo_labelimg | 2 |" in stdout

  # A later invocation adds a repeat (the next seed); the table gives median [range].
  again, _, stdout = bench(tmp_path, folder, f"--previous={tmp_path / 'bench.json'}")
  assert [(r["root"], r["repeat"]) for r in again["runs"]] == [(folder, 0), (folder, 1)]
  maps = [r["curve"][-1]["voc07_map"] for r in again["runs"]]
  row = next(line for line in stdout.splitlines() if line.startswith("| yolo_labelimg | 4 |"))
  assert f"{np.median(maps):.3f} [{min(maps):.3f}-{max(maps):.3f}]" in row
  with pytest.raises(AssertionError, match="another config or other flags"):
    bench(tmp_path, folder, f"--previous={tmp_path / 'bench.json'}", "--eval_every_steps=4")
