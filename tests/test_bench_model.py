"""benchmarks/bench_model.py: --repeats runs each model in fresh processes and summarizes."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_repeats_give_median_and_range_over_isolated_runs(tmp_path):
  out = tmp_path / "bench_model.json"
  subprocess.run([sys.executable, "-m", "benchmarks.bench_model", "--models=ssd_tiny",
                  "--batch=1", "--iters=3", "--functions=forward", "--repeats=2", f"--out={out}"],
                 check=True, cwd=ROOT, capture_output=True)
  payload = json.loads(out.read_text())
  assert payload["repeats"] == 2 and payload["machine"]["cpu"]
  runs, (row,) = payload["runs"], payload["results"]
  assert [r["model"] for r in runs] == ["ssd_tiny", "ssd_tiny"]
  rates = [r["forward_images_per_s"] for r in runs]
  assert row["repeats"] == 2 and row["forward_images_per_s_range"] == [min(rates), max(rates)]
  assert row["forward_images_per_s"] == sum(rates) / 2
  assert min(rates) > 0 and row["peak_rss_mib"] > 0
  # Each run keeps the spread of its own timed calls; the row's range is between the runs.
  for r in runs:
    calls = r["forward_images_per_s_calls"]
    assert calls["range"][0] <= calls["median"] <= calls["range"][1]
    assert calls["median"] == r["forward_images_per_s"]
  assert "forward_images_per_s_calls" not in row
  # Only the functions asked for were compiled and timed.
  for name in ("targets", "train", "detect"):
    assert f"{name}_images_per_s" not in row and f"{name}_compile_s" not in row
  # The model as its config builds it (ssd_tiny's synthetic recipe: 4 classes, 128 px).
  assert row["image_size"] == 128 and row["conv_impl"] == "auto" and row["num_priors"] > 0
