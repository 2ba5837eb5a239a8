"""benchmarks/bench_targets.py: JAX against the NumPy reference, median and range of repeats."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_repeats_give_median_range_and_per_repeat_speedups(tmp_path):
  out = tmp_path / "bench_targets.json"
  subprocess.run([sys.executable, "-m", "benchmarks.bench_targets", "--batch=2",
                  "--max_boxes=4", "--iters=1", "--repeats=3", f"--out={out}"],
                 check=True, cwd=ROOT, capture_output=True)
  payload = json.loads(out.read_text())
  assert payload["repeats"] == 3 and payload["machine"]["cpu"]
  jax_rates, ref_rates = payload["raw"]["jax"], payload["raw"]["numpy_reference"]
  assert len(jax_rates) == len(ref_rates) == 3 and min(jax_rates + ref_rates) > 0
  assert payload["jax_images_per_s"] == {"median": sorted(jax_rates)[1],
                                         "range": [min(jax_rates), max(jax_rates)]}
  speedups = sorted(j / r for j, r in zip(jax_rates, ref_rates))
  assert payload["speedup"]["median"] == pytest.approx(speedups[1])
  assert payload["speedup"]["range"] == pytest.approx([speedups[0], speedups[2]])
  assert payload["jax_ms_per_batch"] == pytest.approx(2e3 / sorted(jax_rates)[1])
