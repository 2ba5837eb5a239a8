"""The train loop: configs, data-parallel equivalence, exact resumption, NaN stop, multi-host."""

import json
import os
import signal
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from experiments.configs import ablation_table2
from ssd_jax import experiment, overrides, photometric, train, train_step
from ssd_jax.data import label_map as label_map_lib
from tests import fixtures, forkserver, tiny_train_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(**changes):
  """``tests/tiny_train_config.py`` with dotted-key overrides."""
  return overrides.apply_overrides(tiny_train_config.get_config(), changes)


def _run_main(workdir, *flags, env=None):
  """``experiments/main.py`` in a subprocess; ``flags`` start with ``--config=...``."""
  cmd = [*forkserver.command("experiments.main"), f"--workdir={workdir}", *flags]
  return subprocess.Popen(cmd, cwd=ROOT, env=fixtures.subprocess_env(**(env or {})),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_missing_dataset_path_is_a_clear_error(tmp_path):
  from experiments.configs import custom_voc_dir  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match="config.data.root"):
    train.train_and_evaluate(custom_voc_dir.get_config(), str(tmp_path))


def test_non_finite_loss_stops_naming_the_step(tmp_path):
  c = tiny_config(**{"optimizer.lr": float("nan"), "optimizer.warmup_steps": 0})
  with pytest.raises(FloatingPointError, match="step 1") as err:
    train.train_and_evaluate(c, str(tmp_path), mode="train")
  assert "no checkpoint" in str(err.value)
  assert not os.path.exists(tmp_path / "checkpoints" / "1")


def test_train_and_eval_writes_metrics_png_and_resumes_without_retraining(tmp_path):
  c = tiny_config(**{"num_train_steps": 2, "eval.every_steps": 2})
  metrics = train.train_and_evaluate(c, str(tmp_path))
  assert metrics["step"] == 2 and metrics["num_images"] == 8
  breakdown = [f"{m}_ap_{size}" for m in ("voc07", "voc") for size in ("small", "medium",
                                                                       "large")]
  breakdown += ["recall", *(f"recall_ar_{b}" for b in ("1to3", "1to2", "1to1", "2to1", "3to1"))]
  for key in ("voc07_map", "voc_map", "voc07_per_class_ap", "voc_per_class_ap", *breakdown):
    assert key in metrics
  # The priors' coverage of the test boxes: high for ssd_tiny's layout on the synthetic shapes.
  assert 0.5 < metrics["prior_recall"] <= 1 and 0.5 < metrics["prior_mean_best_iou"] < 1
  assert json.loads((tmp_path / "metrics.json").read_text()).keys() == metrics.keys()
  assert (tmp_path / "detections.png").exists()
  events = [f for f in os.listdir(tmp_path) if f.startswith("events.out.tfevents")]
  tags = {v.tag for f in events
          for event in tf.compat.v1.train.summary_iterator(str(tmp_path / f))
          for v in event.summary.value}
  assert {"voc07_map", "val_voc07_ap_small", "recall_ar_1to1", "train/loss"} <= tags
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2"]
  assert os.listdir(tmp_path / "checkpoints_best") == ["2"]
  again = train.train_and_evaluate(c, str(tmp_path))  # already done: evaluates, trains nothing
  assert again["step"] == 2 and again["voc07_map"] == pytest.approx(metrics["voc07_map"])
  assert label_map_lib.load(str(tmp_path)).class_names == ("circle", "square", "triangle",
                                                           "cross")

  # The same workdir with a dataset of other classes would relabel the run's outputs.
  three = tiny_config(**{"num_train_steps": 2, "data.synthetic.num_classes": 3})
  with pytest.raises(ValueError, match="label_map.json holds classes .* now has"):
    train.train_and_evaluate(three, str(tmp_path))


def test_eval_mode_needs_a_checkpoint_and_writes_nothing_without_one(tmp_path):
  label_map_lib.save_or_check(label_map_lib.LabelMap(("circle", "square", "triangle", "cross")),
                              str(tmp_path))
  with pytest.raises(FileNotFoundError, match="has no checkpoint in checkpoints/"):
    train.train_and_evaluate(tiny_config(), str(tmp_path), mode="eval")
  assert os.listdir(tmp_path) == ["label_map.json"]


def test_sigterm_then_resume_equals_uninterrupted_run(tmp_path):
  """Kill a run mid-way with SIGTERM; rerunning finishes with the same parameters, bit for bit,
  as a run that was never interrupted (same data order, same augmentation). The data is a small
  VOC folder read by the CPU recipe for one's own data (at 128 px): 8 JPEGs, 2 steps per epoch."""
  names = ("car", "tree")
  images = [fixtures.FixtureImage(f"im{i}", "", 90 + 7 * i, 70, [
      fixtures.FixtureObject(names[i % 2], (5 + i, 8, 50, 60)),
      fixtures.FixtureObject(names[(i + 1) % 2], (40, 20, 85, 66))]) for i in range(9)]
  folder = fixtures.write_voc_folder(str(tmp_path / "voc"), {"trainval": images[:8],
                                                             "test": images[8:]})
  # SIGTERM is sent at step 3: the run saves a few steps later, well before the periodic
  # checkpoint at step 20 (epoch 10), and the rerun crosses epoch boundaries and that checkpoint.
  total = 24
  config_flags = [f"--config.data.root={folder}", "--config.batch_size=4",
                  "--config.num_epochs=12", "--config.checkpoint.every_epochs=10",
                  "--config.model.image_size=128", "--config.model.conv_impl=xla",
                  "--config.log_every_steps=1"]
  steps = ["--config=experiments/configs/custom_voc_dir.py:cpu", *config_flags, "--mode=train"]
  # The uninterrupted run, in this process: the same XLA flags as the subprocesses
  # (fixtures.subprocess_env), so the same programs.
  train.train_and_evaluate(fixtures.experiment_config("custom_voc_dir:cpu", *config_flags),
                           str(tmp_path / "straight"), mode="train")
  interrupted = _run_main(tmp_path / "interrupted", *steps)
  lines = []
  for line in interrupted.stdout:
    lines.append(line)
    if f"step 3/{total}" in line:
      interrupted.send_signal(signal.SIGTERM)
  assert interrupted.wait(timeout=300) == 128 + signal.SIGTERM, "".join(lines[-20:])
  saved = sorted(int(s) for s in os.listdir(tmp_path / "interrupted" / "checkpoints"))
  assert 3 <= saved[-1] < 20, saved  # saved on SIGTERM, not at a periodic step
  resumed = _run_main(tmp_path / "interrupted", *steps)
  out = resumed.communicate(timeout=300)[0]
  assert resumed.returncode == 0, out[-3000:]
  assert "Resuming from" in out
  a = fixtures.checkpoint_params(tmp_path / "straight", total)
  b = fixtures.checkpoint_params(tmp_path / "interrupted", total)
  assert a.keys() == b.keys()
  for key, value in a.items():
    np.testing.assert_array_equal(b[key], value, err_msg=key)


# Two runs that differ in every field that can train together (experiment.STACKABLE). Plain SGD:
# Adam's division by sqrt(v) magnifies the float noise of near-zero gradients to ~1e-4 in a few
# weights (measured), which would hide a real difference of that size.
STACKED_BASE = {"num_train_steps": 2, "eval.every_steps": 2, "optimizer.name": "sgd",
                "optimizer.lr": 1e-2, "priors": ablation_table2.TINY_PRIOR_KNOBS,
                "data.num_val_examples": 0, "eval.num_images_to_draw": 0}
OTHER = {"seed": 1, "priors.s_min": 0.15, "priors.s_max": 0.85, "optimizer.lr": 2e-2,
         "matching.iou_threshold": 0.45, "loss.neg_pos_ratio": 2.5, "loss.alpha": 0.8}


def test_stacked_runs_equal_the_same_runs_trained_one_by_one(tmp_path):
  """Two runs (two seeds, so each its own batches, ``[R, B, ...]``) trained together and alone:
  the same checkpoints (float tolerance: the batched convolutions sum in another order, ~6e-8)
  and metrics, each in its own workdir."""
  configs = {"a": tiny_config(**STACKED_BASE), "b": tiny_config(**{**STACKED_BASE, **OTHER})}
  alone = {name: train.train_and_evaluate(c, str(tmp_path / "alone" / name))
           for name, c in configs.items()}
  together = train.train_stacked(list(configs.values()),
                                 [str(tmp_path / "stacked" / n) for n in configs])
  for name, metrics in zip(configs, together):
    where = tmp_path / "stacked" / name
    expected = fixtures.checkpoint_params(tmp_path / "alone" / name)
    assert fixtures.largest_change(expected, fixtures.checkpoint_params(where)) < 1e-6, name
    assert os.listdir(where / "checkpoints") == ["2"]
    # As text: NaN (an empty size range) equals NaN.
    assert json.dumps(json.loads((where / "metrics.json").read_text())) == json.dumps(metrics)
    assert metrics.keys() == alone[name].keys() and metrics["step"] == 2
    for key in ("voc07_map", "voc_map", "voc07_ap_medium", "recall"):
      assert metrics[key] == pytest.approx(alone[name][key], abs=1e-4, nan_ok=True), key
  assert fixtures.largest_change(*(fixtures.checkpoint_params(tmp_path / "alone" / n)
                                   for n in configs)) > 1e-3


def test_stacked_step_with_one_shared_batch_equals_the_single_steps():
  """Runs of one seed share their batches: one batch feeds the stacked step."""
  same_seed = {k: v for k, v in OTHER.items() if k != "seed"}
  configs = [tiny_config(**STACKED_BASE), tiny_config(**{**STACKED_BASE, **same_seed})]
  mesh = experiment.create_mesh()
  trainings = [experiment.create_training(c, mesh) for c in configs]
  step, shared = experiment.create_stacked_train_step(trainings, mesh)
  assert shared
  states = [t.initial_state(t.config, mesh) for t in trainings]
  stacked = train_step.stack(states)
  batches = experiment.train_batches(configs[0], trainings[0].data.train)
  rng = np.random.default_rng(0)
  for _ in range(2):
    batch = next(batches)
    # Exactly constant regions (the zoom-out's fill) make exact ties (max-pool windows, equal
    # losses), which the batched and the single step may break differently (measured: 1e-5
    # apart after one step, 6e-8 with this noise): the noise keeps the comparison exact.
    noise = rng.integers(-2, 3, batch["image"].shape)
    batch["image"] = np.clip(batch["image"] + noise, 0, 255).astype(np.uint8)
    batch = train_step.global_batch(batch, mesh)
    states = [t.step_fn(s, batch)[0] for t, s in zip(trainings, states)]
    stacked, metrics = step(stacked, batch)
  assert metrics["loss"].shape == (2,)
  # Each run's learning rate at its second step, as its own schedule gives it.
  np.testing.assert_allclose(metrics["lr"], [t.lr_fn(1) for t in trainings], rtol=1e-6)
  for r, state in enumerate(states):
    assert fixtures.largest_change(fixtures.flat_params(state.params), fixtures.flat_params(
        train_step.unstack(stacked, r).params)) < 1e-6
  assert fixtures.largest_change(*(fixtures.flat_params(s.params) for s in states)) > 1e-3


def test_train_step_distorts_the_images_with_the_batch_photometric_values():
  """The pipeline only draws the photometric values; the step applies them to the images."""
  config = tiny_config()
  assert config.augment.photometric
  mesh = experiment.create_mesh()
  training = experiment.create_training(config, mesh)
  batch = next(experiment.train_batches(config, training.data.train))
  assert np.any(batch["photometric"] != np.array(photometric.NEUTRAL, np.float32))
  distorted = {k: v for k, v in batch.items() if k not in ("photometric", "footprint")}
  distorted["image"] = np.asarray(photometric.distort(
      batch["image"], batch["photometric"], batch["footprint"])).astype(np.uint8)
  after = [training.step_fn(training.initial_state(config, mesh),
                            train_step.global_batch(b, mesh))[0] for b in (batch, distorted)]
  assert fixtures.largest_change(*(fixtures.flat_params(s.params) for s in after)) < 1e-6
  undistorted = {**distorted, "image": batch["image"]}
  plain = training.step_fn(training.initial_state(config, mesh),
                           train_step.global_batch(undistorted, mesh))[0]
  assert fixtures.largest_change(fixtures.flat_params(after[0].params),
                                 fixtures.flat_params(plain.params)) > 1e-4


def test_a_non_finite_run_among_stacked_runs_stops_naming_its_workdir(tmp_path):
  """Each run's own ``first_bad_step``: the error names the run that diverged, not the other."""
  configs = [tiny_config(**STACKED_BASE),
             tiny_config(**{**STACKED_BASE, **OTHER, "optimizer.lr": float("nan")})]
  with pytest.raises(FloatingPointError, match="step 1") as err:
    train.train_stacked(configs, [str(tmp_path / "good"), str(tmp_path / "diverged")])
  assert str(tmp_path / "diverged") in str(err.value)
  assert str(tmp_path / "good") not in str(err.value)


def test_stacked_runs_must_differ_only_in_stackable_fields(tmp_path):
  a = tiny_config()
  with pytest.raises(ValueError, match="differ in batch_size, optimizer.name"):
    train.train_stacked([a, overrides.apply_overrides(a, {"batch_size": 8,
                                                          "optimizer.name": "sgd"})],
                        [str(tmp_path / "a"), str(tmp_path / "b")])
  with pytest.raises(ValueError, match="distinct workdirs"):
    train.train_stacked([a, a], [str(tmp_path / "a")] * 2)
  assert not os.listdir(tmp_path)
