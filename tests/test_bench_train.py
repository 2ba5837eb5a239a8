"""benchmarks/bench_train.py: the trainer's step timed in blocks (the spread within a run)."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_step_rate_over_all_blocks_with_the_blocks_spread(tmp_path):
  out = tmp_path / "bench_train.json"
  subprocess.run([sys.executable, "-m", "benchmarks.bench_train", "--models=ssd_tiny",
                  "--batch=2", "--measure=step", "--steps=3", "--warmup_steps=0", "--blocks=2",
                  "--config.model.image_size=64", f"--out={out}"],
                 check=True, cwd=ROOT, capture_output=True)
  payload = json.loads(out.read_text())
  (row,) = payload["results"]
  assert payload["machine"]["cpu"] and row["repeats"] == 1 and row["steps"] == 3
  blocks = row["step_images_per_s_blocks"]
  low, high = blocks["range"]
  assert 0 < low <= blocks["median"] <= high
  # 3 steps in blocks of 2 and 1: the rate over all steps lies between the blocks' rates.
  assert low <= row["step_images_per_s"] <= high
  assert row["step_ms_per_step"] == pytest.approx(2e3 / row["step_images_per_s"])
  assert "end_to_end_images_per_s" not in row
