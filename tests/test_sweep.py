"""Sweeps: config overrides, running and resuming a sweep, the results table, ablation configs."""

import csv
import json
import os
import subprocess

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest

from experiments.configs import (ablation_priors, ablation_resolution, ablation_table2,
                                 ablation_table3)
from ssd_jax import priors as priors_lib
from ssd_jax import experiment, overrides, sweep
from tests import fixtures, forkserver, tiny_train_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# ssd_tiny's source maps and their sides on the 128x128 input (models/tiny.py).
TINY_MAP_SIDES = {"p3": 16, "p4": 8, "p5": 4, "p6": 2, "p7": 1}


def tiny_base(num_train_steps=3):
  c = tiny_train_config.get_config()
  c.num_train_steps = num_train_steps
  return c


# ---------------------------------------------------------------------------------------------
# Overrides.
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("3", 3), ("1e-3", 1e-3), ("(2.0, 3.0)", (2.0, 3.0)), ("None", None), ("False", False),
    ("p3", "p3"), ("'p3'", "p3"), ("synthetic data", "synthetic data"), ("[1, 2]", [1, 2])])
def test_parse_value(text, expected):
  value = overrides.parse_value(text)
  assert value == expected and type(value) is type(expected)


def test_parse_assignment():
  assert overrides.parse_assignment("optimizer.lr=1e-4") == ("optimizer.lr", 1e-4)
  assert overrides.parse_assignment(" data.root = a=b ") == ("data.root", "a=b")
  for bad in ("num_train_steps", "=3"):
    with pytest.raises(ValueError, match="dotted.key=value"):
      overrides.parse_assignment(bad)


def test_apply_overrides_sets_nested_fields_and_leaves_the_base_alone():
  base = tiny_base()
  c = overrides.apply_overrides(base, {"num_train_steps": 7, "optimizer.lr": 1e-4,
                                   "augment.crop": False, "optimizer.decay_steps": [5, 6]})
  assert (c.num_train_steps, c.optimizer.lr, c.augment.crop) == (7, 1e-4, False)
  assert c.optimizer.decay_steps == (5, 6)  # a list (e.g. from JSON) becomes the tuple field
  assert (base.num_train_steps, base.optimizer.lr, base.augment.crop) == (3, 3e-3, True)
  assert overrides.apply_overrides(base, {}).to_dict() == base.to_dict()


def test_apply_overrides_tuple_values_and_whole_sub_configs():
  base = tiny_base()
  assert base.priors is None
  c = overrides.apply_overrides(base, {"priors": {"s_min": 0.2, "s_max": 0.8,
                                              "aspect_ratios": [2.0, 3.0]}})
  assert isinstance(c.priors, ml_collections.ConfigDict)
  assert c.priors.aspect_ratios == (2.0, 3.0)
  c = overrides.apply_overrides(c, {"priors.aspect_ratios": ((),) * 5, "priors.s_min": 0.1})
  assert c.priors.aspect_ratios == ((),) * 5 and c.priors.s_min == 0.1
  np.testing.assert_allclose(experiment.create_model(c, 4).prior_spec.scales,
                             [0.1, 0.275, 0.45, 0.625, 0.8])


@pytest.mark.parametrize("changes, message", [
    ({"num_train_step": 5}, r"'num_train_step'.*config has no field 'num_train_step'"),
    ({"optimizer.learning_rate": 0.1}, r"config.optimizer has no field 'learning_rate'"),
    ({"optimiser.lr": 0.1}, r"config has no field 'optimiser'"),
    ({"num_train_steps.x": 1}, r"config.num_train_steps is 3, not a ConfigDict"),
    ({"priors.s_min": 0.2}, r"config.priors is None, not a ConfigDict; set it as a whole"),
    ({"num_train_steps": 1.5}, r"override 'num_train_steps'.*cannot be casted"),
])
def test_apply_overrides_errors_name_the_key(changes, message):
  with pytest.raises(ValueError, match=message):
    overrides.apply_overrides(tiny_base(), changes)


def test_check_and_select_runs():
  runs = [("a", {}), ("b", {"seed": 1})]
  assert sweep.check_runs(runs) == runs
  assert sweep.select_runs(runs, ["b"]) == [runs[1]]
  assert sweep.select_runs(runs, []) == runs
  with pytest.raises(ValueError, match=r"no runs named \['c'\]"):
    sweep.select_runs(runs, ["b", "c"])
  for bad, message in [([("a", {}), ("a", {})], "appears twice"),
                       ([("x/y", {})], "directory name"), ([("", {})], "directory name"),
                       ([("a", "seed=1")], "must be \\(name")]:
    with pytest.raises(ValueError, match=message):
      sweep.check_runs(bad)


# ---------------------------------------------------------------------------------------------
# Running: the real train loop once, then the skip / resume logic with a fake one.
# ---------------------------------------------------------------------------------------------
def test_cli_sweep_of_one_run_with_two_seeds_writes_the_results_and_a_rerun_skips_them(
    tmp_path):
  """The real train loop, through ``python -m experiments.sweep`` with ``--set``, ``--only``,
  ``--seeds`` and ``--stack`` (the two seeds train together; tests/test_train.py shows that this
  equals training them one by one)."""
  config_file = tmp_path / "two_runs.py"
  config_file.write_text(
      "from tests import tiny_train_config\n"
      "get_config = tiny_train_config.get_config\n"
      "def get_sweep():\n"
      "  return [('flip', {}), ('no_flip', {'augment.flip': False}), ('other', {'seed': 1})]\n")
  workdir = tmp_path / "sweep"
  settings = ["num_train_steps=2", "model.conv_impl='xla'", "eval.num_images_to_draw=0"]
  result = subprocess.run(
      [*forkserver.command("experiments.sweep"), f"--config={config_file}",
       f"--workdir={workdir}", "--only=no_flip", "--seeds=2", "--stack",
       *(f"--set={o}" for o in settings)],
      cwd=ROOT, env=fixtures.subprocess_env(), capture_output=True, text=True, timeout=600,
      check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  dirs = ["no_flip", "no_flip-seed1"]  # --only: "flip" and "other" did not run
  assert sorted(os.listdir(workdir)) == dirs + ["results.csv", "results.md", "results.png"]

  metrics = {}
  for name in dirs:
    with open(workdir / name / "metrics.json") as f:
      metrics[name] = json.load(f)
    assert metrics[name]["step"] == 2
    assert sorted(os.listdir(workdir / name / "checkpoints")) == ["2"]
    with open(workdir / name / "config.json") as f:
      config = json.load(f)
    assert config["augment"]["flip"] is False  # the override reached it
    assert config["seed"] == (1 if name.endswith("-seed1") else 0)
  assert fixtures.largest_change(*(fixtures.checkpoint_params(workdir / d) for d in dirs)) > 1e-3
  lines = (workdir / "results.md").read_text().splitlines()
  assert lines[0] == ("| run | augment.flip | seeds | VOC07 mAP (%) | VOC mAP (%) | "
                      "train time (min) |")
  no_flip = [100 * metrics[d]["voc07_map"] for d in dirs]
  assert lines[2].startswith(f"| no_flip | False | 2 | {np.mean(no_flip):.1f} ± "
                             f"{np.std(no_flip, ddof=1):.1f} | ")
  assert any(line.startswith("| run | AP small (%) | AP medium (%) | AP large (%) | recall 1:3")
             for line in lines)
  assert lines[0] in result.stdout  # the tables are printed too
  with open(workdir / "results.csv") as f:
    table = list(csv.DictReader(f))
  assert [(r["run"], r["seed"]) for r in table] == [("no_flip", "0"), ("no_flip", "1")]
  for r, name in zip(table, dirs):
    for key in ("voc07_map", "voc_map", "voc07_ap_large", "recall_ar_1to1"):
      assert float(r[key]) == pytest.approx(metrics[name][key], nan_ok=True)
    assert float(r["train_time_s"]) > 0
  with open(workdir / "results.png", "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"

  # Rerunning the finished sweep trains nothing and reports the same numbers.
  base, runs = sweep.load_sweep(str(config_file))
  base = overrides.apply_overrides(base, dict(map(overrides.parse_assignment, settings)))
  rows = sweep.run_sweep(base, runs, str(workdir), only=["no_flip"], train_fn=_must_not_train,
                         seeds=2)
  assert [(r["run_dir"], r["skipped"]) for r in rows] == [(d, True) for d in dirs]
  assert [r["voc07_map"] for r in rows] == [metrics[d]["voc07_map"] for d in dirs]
  assert [r["train_time_s"] for r in rows] == [float(r["train_time_s"]) for r in table]


def _must_not_train(config, workdir):
  raise AssertionError(f"{workdir} was trained again")


class FakeTrain:
  """Stands in for ``train_and_evaluate``: records its calls, writes ``metrics.json``."""

  def __init__(self):
    self.calls = []

  def __call__(self, config, workdir):
    self.calls.append(os.path.basename(workdir))
    metrics = {"step": config.num_train_steps, "voc07_map": config.optimizer.lr,
               "voc_map": config.optimizer.lr / 2}
    with open(os.path.join(workdir, "metrics.json"), "w") as f:
      json.dump(metrics, f)
    return metrics


def test_rerunning_a_sweep_skips_finished_runs_and_resumes_unfinished_ones(tmp_path):
  base, workdir = tiny_base(), str(tmp_path)
  runs = [("a", {"optimizer.lr": 0.25}), ("b", {"optimizer.lr": 0.5}), ("c", {})]
  fake = FakeTrain()
  first = sweep.run_sweep(base, runs, workdir, train_fn=fake)
  assert fake.calls == ["a", "b", "c"]
  assert [r["voc07_map"] for r in first] == [0.25, 0.5, 3e-3]

  # "b" was interrupted: its last evaluation is from step 2 of 3.
  with open(tmp_path / "b" / "metrics.json", "w") as f:
    json.dump({"step": 2, "voc07_map": 0.0}, f)
  os.remove(tmp_path / "c" / "metrics.json")  # "c" died before its first evaluation
  fake.calls.clear()
  again = sweep.run_sweep(base, runs, workdir, train_fn=fake)
  assert fake.calls == ["b", "c"]
  assert [r["skipped"] for r in again] == [True, False, False]
  assert again[0]["voc07_map"] == 0.25
  assert again[0]["train_time_s"] == first[0]["train_time_s"]  # read back from the run dir
  assert again[1]["train_time_s"] > first[1]["train_time_s"]  # both segments of "b"

  fake.calls.clear()
  assert [r["skipped"] for r in sweep.run_sweep(base, runs, workdir, train_fn=fake)] == [True] * 3
  assert not fake.calls


def test_seeds_train_every_run_again_and_more_seeds_reuse_the_first(tmp_path):
  base, workdir, fake = tiny_base(), str(tmp_path), FakeTrain()
  runs = [("a", {}), ("b", {"seed": 5})]
  sweep.run_sweep(base, runs, workdir, train_fn=fake)
  assert fake.calls == ["a", "b"]
  rows = sweep.run_sweep(base, runs, workdir, train_fn=fake, seeds=3)
  assert fake.calls == ["a", "b", "a-seed1", "a-seed2", "b-seed6", "b-seed7"]
  assert [(r["run"], r["seed"], r["skipped"]) for r in rows] == [
      ("a", 0, True), ("a", 1, False), ("a", 2, False),
      ("b", 5, True), ("b", 6, False), ("b", 7, False)]
  for row in rows:
    with open(tmp_path / row["run_dir"] / "config.json") as f:
      assert json.load(f)["seed"] == row["seed"]
  with pytest.raises(ValueError, match="'a-seed1' appears twice"):
    sweep.run_sweep(base, [("a", {}), ("a-seed1", {})], workdir, train_fn=fake, seeds=2)
  with pytest.raises(ValueError, match="seeds must be >= 1"):
    sweep.run_sweep(base, runs, workdir, train_fn=fake, seeds=0)


class FakeStack:
  """Stands in for ``train_stacked``: records the groups, trains each run with ``FakeTrain``."""

  def __init__(self, fake_train):
    self.groups, self.train = [], fake_train

  def __call__(self, configs, workdirs):
    self.groups.append([os.path.basename(w) for w in workdirs])
    return [self.train(c, w) for c, w in zip(configs, workdirs)]


def test_stack_groups_the_runs_that_can_train_together(tmp_path):
  base, workdir, fake = tiny_base(), str(tmp_path), FakeTrain()
  runs = [("a", {}), ("b", {"optimizer.lr": 0.5}), ("c", {"batch_size": 8}),
          ("d", {"loss.alpha": 2.0})]
  # "d" was interrupted at step 2: it resumes alone (the others start from step 0).
  with ocp.CheckpointManager(tmp_path / "d" / "checkpoints") as manager:
    manager.save(2, args=ocp.args.StandardSave({"x": np.zeros(1)}))
  stack = FakeStack(fake)
  rows = sweep.run_sweep(base, runs, workdir, train_fn=fake, seeds=2, stack=True, stack_fn=stack)
  assert stack.groups == [["a", "a-seed1", "b", "b-seed1", "d-seed1"], ["c", "c-seed1"]]
  assert fake.calls == ["a", "a-seed1", "b", "b-seed1", "d-seed1", "c", "c-seed1", "d"]
  assert [r["run_dir"] for r in rows] == ["a", "a-seed1", "b", "b-seed1", "c", "c-seed1", "d",
                                          "d-seed1"]
  times = {r["run_dir"]: r["train_time_s"] for r in rows}
  assert times["a"] == times["b-seed1"] > 0  # a fifth each of their stack's time
  assert [r["voc07_map"] for r in rows[:3]] == [3e-3, 3e-3, 0.5]


def test_a_preempted_run_keeps_its_time_and_resumes(tmp_path):
  def preempted(config, workdir):
    del config, workdir
    raise SystemExit(143)  # what train_and_evaluate does after SIGTERM, checkpoint saved

  base, workdir, runs = tiny_base(), str(tmp_path), [("a", {})]
  with pytest.raises(SystemExit):
    sweep.run_sweep(base, runs, workdir, train_fn=preempted)
  with open(tmp_path / "a" / "train_time.json") as f:
    first_segment = json.load(f)["train_time_s"]
  assert first_segment > 0 and not (tmp_path / "a" / "metrics.json").exists()
  fake = FakeTrain()
  (row,) = sweep.run_sweep(base, runs, workdir, train_fn=fake)
  assert fake.calls == ["a"] and row["train_time_s"] > first_segment


def test_only_trains_the_named_runs_and_reports_finished_ones(tmp_path):
  base, workdir, fake = tiny_base(), str(tmp_path), FakeTrain()
  runs = [("a", {}), ("b", {"seed": 1}), ("c", {"seed": 2})]
  rows = sweep.run_sweep(base, runs, workdir, only=["b"], train_fn=fake)
  assert fake.calls == ["b"] and [r["run"] for r in rows] == ["b"]
  rows = sweep.run_sweep(base, runs, workdir, only=["c"], train_fn=fake)
  assert fake.calls == ["b", "c"]
  assert [(r["run"], r["skipped"]) for r in rows] == [("b", True), ("c", False)]


def test_a_changed_config_in_an_existing_run_dir_is_an_error(tmp_path):
  base, workdir, fake = tiny_base(), str(tmp_path), FakeTrain()
  sweep.run_sweep(base, [("a", {"seed": 1})], workdir, train_fn=fake)
  with pytest.raises(ValueError, match=r"different config \(seed differ\)"):
    sweep.run_sweep(base, [("a", {"seed": 2})], workdir, train_fn=fake)
  with pytest.raises(ValueError, match="num_train_steps differ"):
    sweep.run_sweep(tiny_base(5), [("a", {"seed": 1})], workdir, train_fn=fake)
  assert fake.calls == ["a"]


def test_every_run_is_checked_before_any_trains(tmp_path):
  fake = FakeTrain()
  with pytest.raises(ValueError, match="no field 'lrr'"):
    sweep.run_sweep(tiny_base(), [("a", {}), ("b", {"optimizer.lrr": 1.0})], str(tmp_path),
                    train_fn=fake)
  assert not fake.calls and not os.listdir(tmp_path)


def test_load_sweep_needs_both_functions():
  with pytest.raises(ValueError, match="must define get_sweep"):
    sweep.load_sweep(os.path.join(ROOT, "tests", "tiny_train_config.py"))
  with pytest.raises(ValueError, match="not a Python file"):
    sweep.load_sweep(os.path.join(ROOT, "no_such_sweep.py"))


# ---------------------------------------------------------------------------------------------
# The ablation configs: every run builds, with heads that match its priors (no training).
# ---------------------------------------------------------------------------------------------
def expected_num_priors(layers, ratios):
  """Priors of ssd_tiny's linear-scale layout: 2 squares + 2 per ratio in every cell."""
  return sum(TINY_MAP_SIDES[name] ** 2 * (2 + 2 * len(ratios)) for name in layers)


@pytest.mark.parametrize("module", [ablation_table2, ablation_table3])
def test_ablation_runs_build_models_whose_heads_match_their_priors(module):
  base = module.get_config()
  runs = sweep.check_runs(module.get_sweep())
  assert len(runs) >= 4
  for name, changes in runs:
    c = overrides.apply_overrides(base, changes)
    model = experiment.create_model(c, num_classes=c.data.synthetic.num_classes)
    spec = model.prior_spec
    layers = c.priors.layers or tuple(TINY_MAP_SIDES)
    ratios = c.priors.aspect_ratios
    per_layer = ratios if ratios and isinstance(ratios[0], tuple) else (ratios,) * len(layers)
    assert spec.layer_names == tuple(layers), name
    assert spec.num_priors == sum(expected_num_priors([l], r) for l, r in zip(layers, per_layer))
    images = jnp.zeros((1, 128, 128, 3), jnp.float32)
    (loc, logits), _ = jax.eval_shape(lambda m=model: m.init_with_output(jax.random.key(0),
                                                                        images))
    assert loc.shape == (1, len(priors_lib.generate(spec)), 4), name
    assert logits.shape == (1, spec.num_priors, c.data.synthetic.num_classes + 1), name


def test_base_runs_of_table3_and_priors_sweeps_are_table2_full():
  # The same config key for key, so a sweep directory may reuse Table 2's `full` runs (README).
  full = overrides.apply_overrides(ablation_table2.get_config(),
                                   dict(ablation_table2.get_sweep())["full"])
  for module, name in ((ablation_table3, "p3-p7"), (ablation_priors, "paper")):
    run = overrides.apply_overrides(module.get_config(), dict(module.get_sweep())[name])
    assert overrides.config_differences(run, full) == [], module.__name__
  other = dict(ablation_table3.get_sweep())["p3-p6"]
  assert overrides.config_differences(
      overrides.apply_overrides(ablation_table3.get_config(), other), full) == ["priors.layers"]


def test_table2_full_run_is_ssd_tiny_default_and_knobs_differ_as_named():
  base = ablation_table2.get_config()
  runs = dict(ablation_table2.get_sweep())
  full = experiment.create_model(overrides.apply_overrides(base, runs["full"]), 4).prior_spec
  assert full == experiment.create_model(tiny_base(), 4).prior_spec  # the model's default priors
  no_aug = overrides.apply_overrides(base, runs["no_augment"]).augment
  assert (no_aug.crop, no_aug.expand, no_aug.flip, no_aug.photometric) == (False, False, True,
                                                                             True)
  cells = {name: experiment.create_model(overrides.apply_overrides(base, runs[name]), 4)
           .prior_spec.boxes_per_cell for name in ("ratio1_only", "plus_ratio3")}
  assert cells == {"ratio1_only": (2,) * 5, "plus_ratio3": (6,) * 5}
  assert base.num_train_steps == base.eval.every_steps
  assert max(base.optimizer.decay_steps) < base.num_train_steps


def test_resolution_runs_scale_the_input_and_the_priors_with_it():
  base = ablation_resolution.get_config()
  specs = [experiment.create_model(overrides.apply_overrides(base, changes), 4).prior_spec
           for _, changes in sweep.check_runs(ablation_resolution.get_sweep())]
  assert [s.image_size for s in specs] == list(ablation_resolution.SIZES)
  assert [s.feature_map_sizes[0] for s in specs] == [n // 8 for n in ablation_resolution.SIZES]
  for spec in specs:  # the same scales relative to the input: box sizes follow the resolution
    np.testing.assert_allclose(spec.scales, specs[1].scales)
  assert base.data.synthetic.image_size == max(ablation_resolution.SIZES)  # never upsampled
