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


def fake_timers(seconds: dict, calls: list) -> dict:
  """Per contestant a timer that reports ``seconds[contestant][name][repeat]`` and logs each
  call's ``(contestant, name, iters)`` in ``calls``."""
  def timer(contestant):
    def time_call(name, iters):
      repeat = sum(c[:2] == (contestant, name) for c in calls)
      calls.append((contestant, name, iters))
      median_s, first_s = seconds[contestant][name][repeat]
      return {"median_s": median_s, "first_call_s": first_s, "times_s": [median_s]}
    return time_call
  return {c: timer(c) for c in seconds}


def check_interleaved_repeats() -> None:
  """The asserts of the test below, run in a fresh interpreter."""
  from benchmarks import compare_torchvision  # pylint: disable=g-import-not-at-top
  calls = []
  timers = fake_timers({"torchvision": SECONDS["torchvision"], "ours": SECONDS["ours"]}, calls)
  results = compare_torchvision.compare(timers, batch=8, iters=2, repeats=3)
  # Per function the baseline then ours, the order swapped every repeat; iters passed through.
  expected = []
  for order in (("torchvision", "ours"), ("ours", "torchvision"), ("torchvision", "ours")):
    expected += [(f, name, 2) for name in ("forward", "train", "detect") for f in order]
  assert calls == expected
  # forward: ours 8, 4, 2 img/s; torchvision 4, 4, 4; ratios 2, 1, 0.5.
  forward = results["forward"]
  assert forward["ours_images_per_s"] == {"median": 4.0, "range": [2.0, 8.0]}
  assert forward["ours_images_per_s_repeats"] == [8.0, 4.0, 2.0]
  assert forward["torchvision_images_per_s"] == {"median": 4.0, "range": [4.0, 4.0]}
  assert forward["ours_ratios"] == [2.0, 1.0, 0.5]
  assert forward["ours_ratio"] == {"median": 1.0, "range": [0.5, 2.0]}
  assert "torchvision_ratio" not in forward  # the baseline has none
  # The ratio's median is that of the per-repeat ratios, not the ratio of the medians:
  # train ours 4, 4, 4 img/s against 2, 1, 4 -> ratios 2, 4, 1.
  assert results["train"]["ours_ratio"] == {"median": 2.0, "range": [1.0, 4.0]}
  assert results["detect"]["ours_ratios"] == [0.5, 1.0, 2.0]
  # The first call (compilation included) is the first repeat's.
  assert results["train"]["ours_first_call_s"] == 30.0
  assert results["detect"]["torchvision_first_call_s"] == 2.0


def check_several_conv_impls() -> None:
  """Three of our variants without torchvision: named by conv_impl, the first the baseline, the
  order rotated every repeat, only the functions asked for."""
  from benchmarks import compare_torchvision  # pylint: disable=g-import-not-at-top
  from ssd_jax import models  # pylint: disable=g-import-not-at-top
  # The flag's choices, kept out of the parent process's imports, are the models' own.
  assert compare_torchvision._CONV_IMPLS == models.CONV_IMPLS  # pylint: disable=protected-access
  assert compare_torchvision.contestants(["auto"], torchvision=True) == {
      "torchvision": None, "ours": "auto"}
  names = compare_torchvision.contestants(["auto", "cpu_fast", "winograd6"], torchvision=False)
  assert names == {"ours_auto": "auto", "ours_cpu_fast": "cpu_fast",
                   "ours_winograd6": "winograd6"}
  # train: auto 8 s per batch of 8 every repeat; cpu_fast 4, 8, 16; winograd6 2, 8, 8.
  seconds = {"ours_auto": {"train": [(8.0, 1.0)] * 3},
             "ours_cpu_fast": {"train": [(4.0, 2.0), (8.0, 2.0), (16.0, 2.0)]},
             "ours_winograd6": {"train": [(2.0, 3.0), (8.0, 3.0), (8.0, 3.0)]}}
  calls = []
  results = compare_torchvision.compare(fake_timers(seconds, calls), batch=8, iters=1,
                                        repeats=3, functions=["train"])
  assert [c[0] for c in calls] == [
      "ours_auto", "ours_cpu_fast", "ours_winograd6",
      "ours_cpu_fast", "ours_winograd6", "ours_auto",
      "ours_winograd6", "ours_auto", "ours_cpu_fast"]
  assert list(results) == ["train"]
  train = results["train"]
  assert train["ours_cpu_fast_ratios"] == [2.0, 1.0, 0.5]
  assert train["ours_winograd6_ratios"] == [4.0, 1.0, 1.0]
  assert train["ours_winograd6_ratio"] == {"median": 1.0, "range": [1.0, 4.0]}
  assert "ours_auto_ratio" not in train


@pytest.mark.parametrize("check", ["check_interleaved_repeats", "check_several_conv_impls"])
def test_interleaved_repeats_give_median_range_and_per_repeat_ratios(check):
  # compare_torchvision defines absl flags (--repeats, --out) that compare_env, which another
  # test imports into the same pytest worker, defines too: a fresh interpreter keeps them apart.
  result = subprocess.run(
      [sys.executable, "-c", f"from tests import test_compare_torchvision as t; t.{check}()"],
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


@pytest.mark.parametrize("conv_impl", ["auto,nope", "auto,auto"])
def test_unknown_or_repeated_conv_impl_is_a_usage_error(tmp_path, conv_impl):
  result = subprocess.run(
      [sys.executable, "-m", "benchmarks.compare_torchvision", f"--conv_impl={conv_impl}",
       "--notorchvision", f"--out={tmp_path}/x.json"],
      cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert result.returncode == 1
  assert "--conv_impl must be distinct values of" in result.stderr
  assert not (tmp_path / "x.json").exists()
