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
      [sys.executable, "-m", "benchmarks.bench_own_data", *args, "--eval_every_steps=2",
       f"--workdir_root={tmp_path / 'runs'}", f"--out={out}", f"--png={png}", "--", *FLAGS],
      cwd=ROOT, capture_output=True, text=True, env=fixtures.subprocess_env())
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads(out.read_text()), png, result.stdout


def test_curves_of_every_folder_and_repeat(tmp_path):
  folders = [f"{LAYOUTS}/yolo_labelimg", f"{LAYOUTS}/voc_devkit"]
  payload, png, stdout = bench(tmp_path, *folders)
  assert png.stat().st_size > 0 and payload["machine"]["cpu"]
  assert [run["root"] for run in payload["runs"]] == folders
  for run in payload["runs"]:
    assert [p["step"] for p in run["curve"]] == [2, 4]
    minutes = [p["minutes"] for p in run["curve"]]
    assert 0 < minutes[0] < minutes[1] <= run["seconds"] / 60
    assert all(0 <= p["voc07_map"] <= 1 and 0 <= p["voc_map"] <= 1 for p in run["curve"])
  # The test split that was evaluated: yolo_labelimg's hold-out (1), voc_devkit's test.txt (2).
  assert [run["num_test_images"] for run in payload["runs"]] == [1, 2]
  # The last evaluation is the run's metrics.json.
  final = json.loads((tmp_path / "runs" / "voc_devkit_0" / "metrics.json").read_text())
  assert payload["runs"][1]["curve"][-1]["voc07_map"] == pytest.approx(final["voc07_map"])
  assert "| yolo_labelimg | 4 |" in stdout and "| voc_devkit | 2 |" in stdout

  # A later invocation adds a repeat with the next seed; the table gives median [range].
  again, _, stdout = bench(tmp_path, folders[0], f"--previous={tmp_path / 'bench.json'}")
  assert [(r["root"], r["repeat"]) for r in again["runs"]] == [
      (folders[0], 0), (folders[1], 0), (folders[0], 1)]
  maps = [r["curve"][-1]["voc07_map"] for r in again["runs"] if r["root"] == folders[0]]
  assert f"| yolo_labelimg | 4 |" in stdout
  row = next(line for line in stdout.splitlines() if line.startswith("| yolo_labelimg | 4 |"))
  assert f"{np.median(maps):.3f} [{min(maps):.3f}-{max(maps):.3f}]" in row
