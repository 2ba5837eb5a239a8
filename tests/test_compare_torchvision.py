"""benchmarks/compare_torchvision.py: the interleaving and figures of the comparison (torch is
not in the test environment; the workers' timings are faked)."""

import importlib.util
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Seconds per call (median, first call) that each fake framework reports per function and repeat.
SECONDS = {"ours": {"forward": [(1.0, 9.0), (2.0, 8.0), (4.0, 7.0)],
                    "train": [(2.0, 30.0), (2.0, 20.0), (2.0, 10.0)],
                    "detect": [(1.0, 5.0), (1.0, 5.0), (1.0, 5.0)]},
           "torchvision": {"forward": [(2.0, 1.0), (2.0, 1.0), (2.0, 1.0)],
                           "train": [(4.0, 6.0), (8.0, 6.0), (2.0, 6.0)],
                           "detect": [(0.5, 2.0), (1.0, 2.0), (2.0, 2.0)]}}


def check_interleaved_repeats() -> None:
  """The asserts of the test below, run in a fresh interpreter."""
  from benchmarks import compare_torchvision  # pylint: disable=g-import-not-at-top
  calls = []

  def timer(framework):
    def time_call(name, iters):
      repeat = sum(c[:2] == (framework, name) for c in calls)
      calls.append((framework, name, iters))
      median_s, first_s = SECONDS[framework][name][repeat]
      return {"median_s": median_s, "first_call_s": first_s, "times_s": [median_s]}
    return time_call

  results = compare_torchvision.compare({f: timer(f) for f in ("ours", "torchvision")},
                                        batch=8, iters=2, repeats=3)
  # Per function ours then torchvision's, the order swapped every repeat; iters passed through.
  expected = []
  for order in (("ours", "torchvision"), ("torchvision", "ours"), ("ours", "torchvision")):
    expected += [(f, name, 2) for name in ("forward", "train", "detect") for f in order]
  assert calls == expected
  # forward: ours 8, 4, 2 img/s; torchvision 4, 4, 4; ratios 2, 1, 0.5.
  forward = results["forward"]
  assert forward["ours_images_per_s"] == {"median": 4.0, "range": [2.0, 8.0]}
  assert forward["torchvision_images_per_s"] == {"median": 4.0, "range": [4.0, 4.0]}
  assert forward["ratios"] == [2.0, 1.0, 0.5]
  assert forward["ratio"] == {"median": 1.0, "range": [0.5, 2.0]}
  # The ratio's median is that of the per-repeat ratios, not the ratio of the medians:
  # train ours 4, 4, 4 img/s against 2, 1, 4 -> ratios 2, 4, 1.
  assert results["train"]["ratio"] == {"median": 2.0, "range": [1.0, 4.0]}
  assert results["detect"]["ratios"] == [0.5, 1.0, 2.0]
  # The first call (compilation included) is the first repeat's.
  assert results["train"]["ours_first_call_s"] == 30.0
  assert results["detect"]["torchvision_first_call_s"] == 2.0


def test_interleaved_repeats_give_median_range_and_per_repeat_ratios():
  # compare_torchvision defines absl flags (--repeats, --out) that compare_env, which another
  # test imports into the same pytest worker, defines too: a fresh interpreter keeps them apart.
  result = subprocess.run(
      [sys.executable, "-c",
       "from tests import test_compare_torchvision as t; t.check_interleaved_repeats()"],
      cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None,
                    reason="torch is installed here")
def test_without_torch_it_exits_with_the_install_hint(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "benchmarks.compare_torchvision", f"--out={tmp_path}/x.json"],
      cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert result.returncode == 1
  assert "pip install torch==" in result.stderr
  assert not (tmp_path / "x.json").exists()
