"""benchmarks/common.py: the median-and-range summaries every benchmark reports."""

import pytest

from benchmarks import common


def test_spread_is_median_and_min_max():
  assert common.spread([3.0, 1.0, 2.0]) == {"median": 2.0, "range": [1.0, 3.0]}
  assert common.spread([4.0, 1.0]) == {"median": 2.5, "range": [1.0, 4.0]}
  assert common.spread([5.0]) == {"median": 5.0, "range": [5.0, 5.0]}


def test_summarize_groups_runs_and_gives_median_range_of_each_figure():
  runs = [{"model": "a", "data": "x", "rate": 1.0, "compile_s": 9.0, "batch": 8},
          {"model": "b", "data": "x", "rate": 10.0, "compile_s": 1.0, "batch": 8},
          {"model": "a", "data": "x", "rate": 3.0, "compile_s": 7.0, "batch": 8},
          {"model": "a", "data": "y", "rate": 5.0, "batch": 8},
          {"model": "a", "data": "x", "rate": 2.0, "compile_s": 8.0, "batch": 8}]
  rows = common.summarize(runs, ("model", "data"), ("rate", "compile_s", "absent"))
  # One row per (model, data), in order of first appearance.
  assert [(r["model"], r["data"], r["repeats"]) for r in rows] == [
      ("a", "x", 3), ("b", "x", 1), ("a", "y", 1)]
  assert rows[0]["rate"] == 2.0 and rows[0]["rate_range"] == [1.0, 3.0]
  assert rows[0]["compile_s"] == 8.0 and rows[0]["compile_s_range"] == [7.0, 9.0]
  assert rows[1]["rate"] == 10.0 and rows[1]["rate_range"] == [10.0, 10.0]
  # A figure the runs do not have is left out, not invented; other fields are the first run's.
  assert "compile_s" not in rows[2] and "absent" not in rows[0] and "absent_range" not in rows[0]
  assert rows[0]["batch"] == 8
  # The runs themselves are not modified.
  assert runs[0]["rate"] == 1.0 and "repeats" not in runs[0]


def test_summarize_keeps_a_runs_own_spread_only_in_a_row_of_that_run():
  blocks = lambda low, high: {"median": (low + high) / 2, "range": [low, high]}
  runs = [{"model": "a", "rate": 1.0, "rate_blocks": blocks(0.5, 1.5)},
          {"model": "b", "rate": 4.0, "rate_blocks": blocks(3.0, 5.0)},
          {"model": "a", "rate": 3.0, "rate_blocks": blocks(2.0, 4.0)}]
  a, b = common.summarize(runs, ("model",), ("rate",), per_run=("rate_blocks",))
  assert a["repeats"] == 2 and "rate_blocks" not in a and a["rate_range"] == [1.0, 3.0]
  assert b["repeats"] == 1 and b["rate_blocks"] == blocks(3.0, 5.0)
  assert runs[0]["rate_blocks"] == blocks(0.5, 1.5)  # the runs keep theirs


def test_summarize_needs_the_group_fields():
  with pytest.raises(KeyError):
    common.summarize([{"rate": 1.0}], ("model",), ("rate",))


def test_timed_blocks_splits_the_steps_and_times_each_block(monkeypatch):
  clock = iter([0.0, 1.0, 1.0, 3.0, 3.0, 3.5])  # start and end of each of three blocks
  monkeypatch.setattr(common.time, "perf_counter", lambda: next(clock))
  calls = []
  sizes, seconds = common.timed_blocks(calls.append, steps=8, blocks=3)
  assert sizes == calls == [3, 3, 2]  # every step once, nearly equal blocks in order
  assert seconds == [1.0, 2.0, 0.5]
  # Never more blocks than steps.
  calls.clear()
  monkeypatch.setattr(common.time, "perf_counter", lambda: 0.0)
  assert common.timed_blocks(calls.append, steps=2, blocks=5)[0] == calls == [1, 1]


def test_time_fn_reports_the_first_call_apart_and_every_timed_call(monkeypatch):
  # first call 5 s (it compiles), one untimed warm-up, then timed calls of 2, 1, 4 and 3 s
  clock = iter([0.0, 5.0, 5.0, 7.0, 7.0, 8.0, 8.0, 12.0, 12.0, 15.0])
  monkeypatch.setattr(common.time, "perf_counter", lambda: next(clock))
  calls = []
  t = common.time_fn(lambda: calls.append(1), iters=4, warmup=2)
  assert len(calls) == 6
  assert t == {"first_call_s": 5.0, "median_s": 2.5, "times_s": [2.0, 1.0, 4.0, 3.0]}


def test_format_spread_prints_median_and_range_in_one_format():
  assert common.format_spread(1.234, [1.0, 2.5]) == "1.23 [1.00-2.50]"
  assert common.format_spread(347.04, [339.6, 366.7], ".0f") == "347 [340-367]"


def test_rotation_moves_the_first_by_one_every_repeat():
  assert [common.rotation("abc", r) for r in range(4)] == [
      ["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]]
  assert [common.rotation([("x", 1), ("y", 2)], r)[0] for r in range(3)] == [
      ("x", 1), ("y", 2), ("x", 1)]


def test_interleave_rotates_each_group_every_repeat_and_keeps_results_in_repeat_order():
  calls = []

  def measure(item):
    calls.append(item)
    return f"{item}{sum(c == item for c in calls)}"

  results = common.interleave([["a", "b"], ["x", "y", "z"]], repeats=3, measure=measure)
  assert calls == ["a", "b", "x", "y", "z",
                   "b", "a", "y", "z", "x",
                   "a", "b", "z", "x", "y"]
  assert results == {"a": ["a1", "a2", "a3"], "b": ["b1", "b2", "b3"], "x": ["x1", "x2", "x3"],
                     "y": ["y1", "y2", "y3"], "z": ["z1", "z2", "z3"]}
  assert common.interleave([["a"]], repeats=0, measure=measure) == {"a": []}


def test_contest_gives_spreads_and_per_repeat_ratios_to_the_first():
  row = common.contest({"base": [2.0, 4.0, 1.0], "new": [4.0, 4.0, 4.0]})
  assert row["base"] == {"median": 2.0, "range": [1.0, 4.0]}
  assert row["base_repeats"] == [2.0, 4.0, 1.0] and "base_ratio" not in row
  assert row["new_ratios"] == [2.0, 1.0, 4.0]
  assert row["new_ratio"] == {"median": 2.0, "range": [1.0, 4.0]}
  # The median of the per-repeat ratios (2 and 0.5), not the ratio of the medians (2 / 2.5).
  two = common.contest({"base": [1.0, 4.0], "new": [2.0, 2.0]})
  assert two["new_ratio"]["median"] == 1.25
