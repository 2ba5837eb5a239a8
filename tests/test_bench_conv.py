"""benchmarks/bench_conv.py: per-repetition speed-ups, median and range, and one real run."""

import json
import os
import subprocess
import sys

import pytest

from benchmarks import bench_conv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_summarize_gives_median_range_gflops_and_per_repetition_speedups():
  times = {"xla": {"fwd": [10.0, 20.0, 40.0], "fwd_bwd": [30.0, 30.0, 30.0]},
           "cpu_fast": {"fwd": [5.0, 20.0, 10.0], "fwd_bwd": [10.0, 60.0, 15.0]}}
  result = bench_conv.summarize(times, "xla", {"fwd": 2e9, "fwd_bwd": 6e9})
  xla, fast = result["xla"], result["cpu_fast"]
  assert xla["fwd_ms"] == 20.0 and xla["fwd_ms_range"] == [10.0, 40.0]
  assert xla["fwd_gflops"] == pytest.approx(100.0)  # 2 GFLOP in 20 ms
  assert xla["fwd_speedup"] == {"median": 1.0, "range": [1.0, 1.0]}
  # Ratios per repetition (2, 1, 4), not the ratio of the medians (20 / 10 = 2).
  assert fast["fwd_speedup"] == {"median": 2.0, "range": [1.0, 4.0]}
  # fwd_bwd: 3, 0.5, 2 -> median 2, although the median times (30 / 15) also give 2.
  assert fast["fwd_bwd_speedup"] == {"median": 2.0, "range": [0.5, 3.0]}
  assert fast["fwd_bwd_ms"] == 15.0 and fast["fwd_bwd_gflops"] == pytest.approx(400.0)


def test_layer_flops_leaves_out_the_input_gradient_of_conv1_1():
  layers = {layer[0]: layer for layer in bench_conv.LAYERS}
  conv1_1 = bench_conv.layer_flops(layers["conv1_1"], batch=2)
  assert conv1_1["fwd"] == 2 * 2 * 300 * 300 * 3 * 64 * 9
  assert conv1_1["fwd_bwd"] == 2 * conv1_1["fwd"]
  fc7 = bench_conv.layer_flops(layers["fc7"], batch=1)
  assert fc7 == {"fwd": 2 * 19 * 19 * 1024 * 1024, "fwd_bwd": 6 * 19 * 19 * 1024 * 1024}


def test_run_writes_figures_with_spread_and_the_machine(tmp_path):
  out = tmp_path / "bench_conv.json"
  subprocess.run([sys.executable, "benchmarks/bench_conv.py", "--batch=1", "--layers=fc7",
                  "--impls=xla,cpu_fast", "--reps=2", f"--out={out}"], check=True, cwd=ROOT,
                 capture_output=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  payload = json.loads(out.read_text())
  assert payload["machine"]["cpu"] and "vector_extensions" in payload["machine"]
  assert payload["reps"] == 2 and payload["base"] == "xla"
  for impl in ("xla", "cpu_fast"):
    for kind in ("fwd", "fwd_bwd"):
      raw = payload["raw_ms"]["fc7"][impl][kind]
      row = payload["layers"]["fc7"][impl]
      assert len(raw) == 2 and all(t > 0 for t in raw)
      assert row[f"{kind}_ms_range"] == [min(raw), max(raw)]
      assert row[f"{kind}_ms"] == pytest.approx(sum(raw) / 2)
  # One layer: the backbone is that layer (fc7 occurs once).
  assert payload["backbone"]["cpu_fast"]["fwd_ms"] == pytest.approx(
      payload["layers"]["fc7"]["cpu_fast"]["fwd_ms"])


def test_bad_arguments_are_refused():
  result = subprocess.run([sys.executable, "benchmarks/bench_conv.py", "--reps=0"], cwd=ROOT,
                          capture_output=True, text=True)
  assert result.returncode == 2 and "--reps must be >= 1" in result.stderr
