"""benchmarks/bench_own_data.py and own_data_curves.py: the recipe on folders, mAP against
minutes, seeds as repeats."""

import json
import os
import subprocess
import sys

import pytest

from benchmarks import own_data_curves
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


def test_curve_of_a_folder(tmp_path):
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
  assert "| yolo_labelimg | 4 |" in stdout
  assert payload["flags"] == list(FLAGS) and payload["eval_every_steps"] == 2


def _run(root, repeat, maps):
  return {"root": root, "repeat": repeat, "curve": [
      {"step": 100 * (k + 1), "minutes": 1.0 + k + repeat / 10, "voc07_map": m, "voc_map": m / 2}
      for k, m in enumerate(maps)]}


def test_table_gives_median_and_range_over_repeats():
  runs = [_run("/d/faces", 0, [0.1, 0.3]), _run("/d/cells/", 0, [0.5, 0.7]),
          _run("/d/faces", 1, [0.2, 0.5])]
  lines = own_data_curves.table(runs).splitlines()
  assert lines[2:] == [
      "| faces | 100 | 1.1 [1.0-1.1] | 0.150 [0.100-0.200] | 0.075 [0.050-0.100] |",
      "| faces | 200 | 2.0 [2.0-2.1] | 0.400 [0.300-0.500] | 0.200 [0.150-0.250] |",
      "| cells | 100 | 1.0 [1.0-1.0] | 0.500 [0.500-0.500] | 0.250 [0.250-0.250] |",
      "| cells | 200 | 2.0 [2.0-2.0] | 0.700 [0.700-0.700] | 0.350 [0.350-0.350] |"]


def test_previous_runs_must_have_the_same_settings(tmp_path):
  settings = {"config": "experiments/configs/own_data.py", "flags": ["--config.x=1"],
              "eval_every_steps": 250}
  path = tmp_path / "previous.json"
  path.write_text(json.dumps({"machine": {}, **settings, "runs": [_run("/d/a", 0, [0.5])]}))
  assert own_data_curves.previous_runs(str(path), settings) == [_run("/d/a", 0, [0.5])]
  with pytest.raises(ValueError, match="cannot be repeats"):
    own_data_curves.previous_runs(str(path), {**settings, "eval_every_steps": 500})
