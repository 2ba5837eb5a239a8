"""ssd_jax.sweep_report: seed statistics and the significance mark on hand-made metric lists,
the tables, CSV and plot."""

import csv
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from ssd_jax import sweep_report

NAN = float("nan")


def _row(run, seed, voc07, voc=NAN, overrides=None, seconds=60.0, **breakdown):
  return {"run": run, "seed": seed, "overrides": overrides or {}, "step": 3, "voc07_map": voc07,
          "voc_map": voc, "train_time_s": seconds, **breakdown}


def test_seed_stats_by_hand():
  s = sweep_report.seed_stats([0.70, 0.72, 0.74])
  assert s.n == 3 and s.mean == pytest.approx(0.72)
  assert s.std == pytest.approx(0.02)  # sqrt(((-.02)^2 + 0 + .02^2) / (3 - 1))
  assert s.ci95 == pytest.approx(4.302653 * 0.02 / math.sqrt(3), rel=1e-6)  # t(0.975, 2 df)
  one = sweep_report.seed_stats([0.5, NAN])  # a seed that did not compute the metric
  assert (one.n, one.mean) == (1, 0.5) and math.isnan(one.std) and math.isnan(one.ci95)
  none = sweep_report.seed_stats([NAN])
  assert none.n == 0 and math.isnan(none.mean)


def _welch_p(a, b):
  """Welch's two-sided p-value from its formula (Welch-Satterthwaite degrees of freedom)."""
  va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
  t = (np.mean(a) - np.mean(b)) / math.sqrt(va + vb)
  df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
  return 2 * scipy_stats.t.sf(abs(t), df)


@pytest.mark.parametrize("other, expected", [
    ([0.80, 0.81, 0.82], True),   # a gap of 9 points against spreads of 1-2
    ([0.71, 0.73, 0.75], False),  # a gap of 1 point: within the spread
    ([0.76, 0.77, 0.78], True),   # 5 points, spreads of 2 and 1: p = 0.03
    ([0.74, 0.76, 0.78], False),  # 4 points, spreads of 2: p = 0.07
])
def test_differs_is_welchs_t_test(other, expected):
  base = [0.70, 0.72, 0.74]
  assert bool(_welch_p(base, other) < 0.05) is expected
  assert sweep_report.differs(sweep_report.seed_stats(base),
                              sweep_report.seed_stats(other)) is expected


def test_differs_needs_two_seeds_and_handles_no_spread():
  stats = sweep_report.seed_stats
  assert not sweep_report.differs(stats([0.7]), stats([0.9]))
  assert not sweep_report.differs(stats([0.7, 0.7]), stats([0.7, 0.7]))
  assert sweep_report.differs(stats([0.7, 0.7]), stats([0.8, 0.8]))


def test_tables_aggregate_the_seeds_and_mark_differences():
  rows = [_row("base", 0, 0.70), _row("base", 1, 0.72), _row("base", 2, 0.74),
          _row("wide", 0, 0.80, overrides={"priors.s_max": 0.95}, seconds=120.0),
          _row("wide", 1, 0.81, overrides={"priors.s_max": 0.95}, seconds=180.0),
          _row("wide", 2, 0.82, overrides={"priors.s_max": 0.95}, seconds=60.0),
          _row("once", 0, 0.50, 0.25, overrides={"augment.crop": False})]
  header, cells = sweep_report.results_table(rows)
  assert header == ["run", "priors.s_max", "augment.crop", "seeds", "VOC07 mAP (%)",
                    "VOC mAP (%)", "train time (min)"]
  assert cells == [["base", "", "", "3", "72.0 ± 2.0", "-", "1.0"],
                   ["wide", "0.95", "", "3", "81.0 ± 1.0 *", "-", "2.0"],
                   ["once", "", "False", "1", "50.0", "25.0", "1.0"]]  # one seed: no test


def test_one_seed_tables_read_as_before():
  rows = [_row("a", 0, 0.5, 0.25, seconds=90.0),
          _row("b", 0, 0.1234, overrides={"priors.aspect_ratios": (2.0, 3.0),
                                          "augment.crop": False}, seconds=NAN),
          _row("c", 0, 0.0, 0.0, overrides={"priors.layers": ("p3",)}, seconds=6.0)]
  header, cells = sweep_report.results_table(rows)
  assert header == ["run", "priors.aspect_ratios", "augment.crop", "priors.layers",
                    "VOC07 mAP (%)", "VOC mAP (%)", "train time (min)"]
  assert cells == [["a", "", "", "", "50.0", "25.0", "1.5"],
                   ["b", "(2, 3)", "False", "", "12.3", "-", "-"],
                   ["c", "", "", "(p3,)", "0.0", "0.0", "0.1"]]


def test_write_results_with_the_breakdown(tmp_path):
  sizes = lambda s, m, l: {"voc07_ap_small": s, "voc07_ap_medium": m, "voc07_ap_large": l,
                           "recall_ar_1to1": 0.9}
  rows = [_row("a", 0, 0.6, **sizes(0.1, 0.5, 0.9)), _row("a", 1, 0.62, **sizes(0.12, 0.5, 0.9)),
          _row("b", 0, 0.6, **sizes(0.3, 0.5, 0.9)), _row("b", 1, 0.6, **sizes(0.32, 0.5, 0.9))]
  paths = sweep_report.write_results(rows, str(tmp_path))
  text = (tmp_path / "results.md").read_text()
  assert "Welch's t-test" in text and "`*`: differs from `a`" in text
  breakdown = text[text.index("| run | AP small"):].splitlines()
  assert breakdown[2].startswith("| a | 11.0 ± 1.4 | 50.0 ± 0.0 | 90.0 ± 0.0 | - | - | 90.0")
  assert breakdown[3].startswith("| b | 31.0 ± 1.4 * | 50.0 ± 0.0 | 90.0 ± 0.0 |")
  with open(paths["csv"]) as f:
    table = list(csv.DictReader(f))
  assert [(r["run"], r["seed"], float(r["voc07_ap_small"])) for r in table] == [
      ("a", "0", 0.1), ("a", "1", 0.12), ("b", "0", 0.3), ("b", "1", 0.32)]
  with open(paths["png"], "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  with pytest.raises(ValueError, match="no rows"):
    sweep_report.write_results([], str(tmp_path))
