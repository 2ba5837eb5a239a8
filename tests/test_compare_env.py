"""benchmarks/compare_env.py: a command run under several environments, interleaved."""

import json
import os
import subprocess
import sys

from absl import app
import pytest

from benchmarks import compare_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A stand-in for a bench script: reports RATE (default 10) as its images/s, appends the run's
# NAME to LOG, and fails when FAIL is set.
FAKE_BENCH = """
import json, os, sys
if os.environ.get("FAIL"):
  sys.exit("broken on purpose")
with open(os.environ["LOG"], "a") as f:
  f.write(os.environ.get("NAME", "-") + "\\n")
out = next(a for a in sys.argv if a.startswith("--out="))[len("--out="):]
rate = float(os.environ.get("RATE", "10"))
with open(out, "w") as f:
  json.dump({"results": [{"forward_images_per_s": rate, "forward_compile_s": 3.0}],
             "runs": [{"step_images_per_s": 1.0}]}, f)
"""


@pytest.fixture
def bench(tmp_path, monkeypatch):
  script = tmp_path / "fake_bench.py"
  script.write_text(FAKE_BENCH)
  monkeypatch.setenv("LOG", str(tmp_path / "log.txt"))
  return [sys.executable, str(script)]


def test_variants_alternate_and_ratios_compare_with_the_first(bench, tmp_path, monkeypatch):
  monkeypatch.setenv("RATE", "5")  # the first variant inherits it, the third unsets it
  variants = [compare_env.parse_variant(v) for v in
              ("base:NAME=base", "fast:NAME=fast;RATE=20", "unset:NAME=unset;RATE=")]
  result = compare_env.compare(bench, variants, repeats=3)
  # Each repeat starts one variant later, so no variant always runs first or last.
  assert (tmp_path / "log.txt").read_text().split() == [
      "base", "fast", "unset", "fast", "unset", "base", "unset", "base", "fast"]
  assert list(result["figures"]) == ["0.forward_images_per_s"]  # rates only, under 'results'
  figures = result["figures"]["0.forward_images_per_s"]
  assert figures["base"]["values"] == [5.0] * 3 and figures["unset"]["median"] == 10.0
  assert figures["fast"]["ratio_to_first"] == 4.0 and figures["fast"]["ratio_range"] == [4.0, 4.0]
  assert figures["unset"]["ratio_to_first"] == 2.0
  assert result["variants"]["unset"] == {"NAME": "unset", "RATE": None}


def test_a_failing_run_is_an_error_with_its_output(bench):
  broken = compare_env.parse_variant("broken:FAIL=1")
  with pytest.raises(RuntimeError, match="exited with 1:(.|\n)*broken on purpose"):
    compare_env.compare(bench, [compare_env.parse_variant("a:"), broken], repeats=1)
  with pytest.raises(RuntimeError, match="broken on purpose"):  # the baseline is never dropped
    compare_env.compare(bench, [broken, compare_env.parse_variant("a:")], repeats=1,
                        keep_going=True)


def test_keep_going_drops_a_failing_variant_and_says_why(bench, tmp_path):
  variants = [compare_env.parse_variant(v) for v in ("a:NAME=a", "broken:NAME=b;FAIL=1",
                                                      "c:NAME=c;RATE=30")]
  result = compare_env.compare(bench, variants, repeats=2, keep_going=True)
  assert (tmp_path / "log.txt").read_text().split() == ["a", "c", "c", "a"]  # b: tried once
  assert list(result["figures"]["0.forward_images_per_s"]) == ["a", "c"]
  assert "broken on purpose" in result["errors"]["broken"]


@pytest.mark.parametrize("spec", ["no_colon", ":A=1", "x:A"])
def test_malformed_variants_are_usage_errors(spec):
  with pytest.raises(app.UsageError, match="--variant"):
    compare_env.parse_variant(spec)


def test_command_line_writes_the_figures_with_the_variants(bench, tmp_path):
  out = tmp_path / "compare.json"
  result = subprocess.run(
      [sys.executable, "-m", "benchmarks.compare_env", "--repeats=2", "--variant=slow:RATE=1",
       "--variant=fast:RATE=3", f"--out={out}", "--", *bench],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "fast" in result.stdout and "3.000 [3.000-3.000]" in result.stdout
  saved = json.loads(out.read_text())
  assert saved["command"] == bench and saved["variants"]["fast"] == {"RATE": "3"}
  assert saved["figures"]["0.forward_images_per_s"]["fast"]["ratio_to_first"] == 3.0
  assert "cpu" in saved["machine"]
