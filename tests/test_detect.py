"""Detection on image files: ssd_jax.detect and the experiments/detect.py command line."""

import json
import os
import re
import shutil
import subprocess

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from PIL import Image
import pytest
import tensorflow as tf

from ssd_jax import detect, experiment, inference
from tests import fixtures, forkserver, tiny_train_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASS_NAMES = ["circle", "square", "triangle", "cross"]  # the tiny config's synthetic shapes
THRESHOLD = 0.1  # low: the 4-step model is not confident, and the checks need detections


@pytest.fixture
def workdir(trained_workdir):
  """The tiny config's run of 4 steps (tests/conftest.py): checkpoints 2 and 4, no
  checkpoints_best."""
  return trained_workdir


@pytest.fixture(scope="module")
def images(tmp_path_factory):
  """A folder with an RGB PNG, a grayscale JPEG of another size, a corrupt .png and a .txt."""
  folder = tmp_path_factory.mktemp("images")
  rng = np.random.default_rng(0)
  png = rng.integers(0, 256, (120, 160, 3), np.uint8)
  png[30:90, 40:120] = (230, 40, 40)
  Image.fromarray(png).save(folder / "shapes.png")
  gray = np.full((200, 90), 30, np.uint8)
  gray[20:120, 10:70] = 220
  Image.fromarray(gray).save(folder / "photo.jpg", quality=95)
  (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
  (folder / "notes.txt").write_text("not an image")
  return folder


def _reference_detections(workdir, paths, score_threshold):
  """Per image ``(width, height, [(class_id, score, pixel box)])``, computed separately: PIL
  decode, TF bilinear resize as in evaluation, one batch through the predict function, and a
  loop scaling each normalized box by the image's width and height."""
  run = experiment.load_trained_run(tiny_train_config.get_config(), workdir)
  arrays = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
  size = run.model.image_size
  batch = np.stack([np.round(np.clip(tf.image.resize(a, (size, size)).numpy(), 0, 255))
                    .astype(np.uint8) for a in arrays])
  e = run.config.eval  # the base config's NMS settings and variances, spelled out
  settings = inference.DecodeSettings(score_threshold, e.nms_iou_threshold, e.pre_nms_top_k,
                                      e.max_detections, (0.1, 0.2))
  predict = inference.make_predict_fn(run.model, run.priors, settings, run.mesh)
  sharded = jax.device_put(batch, jax.sharding.NamedSharding(
      run.mesh, jax.sharding.PartitionSpec("data")))
  out = jax.device_get(predict(run.params, sharded))
  reference = []
  for i, a in enumerate(arrays):
    height, width = a.shape[:2]
    dets = []
    for k in range(int(out["num_detections"][i])):
      xmin, ymin, xmax, ymax = (float(v) for v in out["boxes"][i, k])
      dets.append((int(out["classes"][i, k]), float(out["scores"][i, k]),
                   [xmin * width, ymin * height, xmax * width, ymax * height]))
    reference.append((width, height, dets))
  return reference


def test_command_line_writes_pixel_boxes_and_drawings(workdir, images, tmp_path):
  out_dir = tmp_path / "out"
  run = subprocess.run(
      [*forkserver.command("experiments.detect"), "--config=tests/tiny_train_config.py",
       f"--workdir={workdir}", f"--input={images}", f"--output={out_dir}",
       f"--score_threshold={THRESHOLD}", "--batch_size=2"],
      cwd=ROOT, env=fixtures.subprocess_env(), capture_output=True, text=True, timeout=300)
  log = run.stdout + run.stderr
  assert run.returncode == 0, log[-3000:]
  assert "Skipping" in log and "broken.png" in log  # the warning names the file
  with open(out_dir / "detections.json") as f:
    result = json.load(f)
  assert result["step"] == 4 and result["class_names"] == CLASS_NAMES
  assert result["score_threshold"] == THRESHOLD
  assert result["skipped"] == [str(images / "broken.png")]
  paths = [str(images / "photo.jpg"), str(images / "shapes.png")]  # sorted; .txt ignored
  assert [r["file"] for r in result["images"]] == paths

  reference = _reference_detections(workdir, paths, THRESHOLD)
  for entry, (width, height, ref) in zip(result["images"], reference):
    assert (entry["width"], entry["height"]) == (width, height)
    dets = entry["detections"]
    assert len(dets) == len(ref) > 0
    for det, (class_id, score, box) in zip(dets, ref):
      assert set(det) == {"label", "class_id", "score", "box"}
      assert det["class_id"] == class_id and det["label"] == CLASS_NAMES[class_id - 1]
      assert det["score"] == pytest.approx(score, abs=1e-5) and THRESHOLD < det["score"] <= 1
      np.testing.assert_allclose(det["box"], box, atol=0.01)
      xmin, ymin, xmax, ymax = det["box"]
      assert 0 <= xmin <= xmax <= width and 0 <= ymin <= ymax <= height
    scores = [d["score"] for d in dets]
    assert scores == sorted(scores, reverse=True)
    with Image.open(out_dir / entry["drawing"]) as drawing:
      assert drawing.format == "PNG" and drawing.size == (width, height)
  assert sorted(os.listdir(out_dir)) == ["detections.json", "photo.png", "shapes.png"]


def test_load_picks_the_step_or_the_best_checkpoint(workdir, tmp_path):
  config = tiny_train_config.get_config()
  latest = experiment.load_trained_run(config, workdir)
  second = experiment.load_trained_run(config, workdir, step=2)
  assert (latest.step, second.step) == (4, 2)
  assert latest.label_map.class_names == tuple(CLASS_NAMES)
  kernel = lambda loaded: np.asarray(loaded.params["backbone"]["stem"]["kernel"])
  assert not np.array_equal(kernel(latest), kernel(second))

  # checkpoints_best as train_and_eval writes it, with step 2 scoring higher than step 4.
  run = tmp_path / "run"
  shutil.copytree(workdir, run)
  with ocp.CheckpointManager(run / "checkpoints") as last:
    states = {step: last.restore(step) for step in (2, 4)}
  best_dir = run / "checkpoints_best"
  with ocp.CheckpointManager(best_dir, options=ocp.CheckpointManagerOptions(
      best_fn=lambda m: m["score"], best_mode="max")) as best:
    for step, score in ((2, 0.2), (4, 0.1)):
      best.save(step, args=ocp.args.StandardSave(states[step]), metrics={"score": score})
  chosen = experiment.load_trained_run(config, str(run), best=True)
  assert chosen.step == 2 and chosen.checkpoint_dir == str(best_dir)
  np.testing.assert_array_equal(kernel(chosen), kernel(second))
  assert experiment.load_trained_run(config, str(run), step=4, best=True).step == 4


def test_bad_inputs_are_clear_errors(workdir, images, tmp_path):
  config = tiny_train_config.get_config()
  missing = str(tmp_path / "no_such_run")
  with pytest.raises(FileNotFoundError, match="not the workdir of a training run"):
    experiment.load_trained_run(config, missing)
  labels_only = tmp_path / "labels_only"
  labels_only.mkdir()
  shutil.copy(os.path.join(workdir, "label_map.json"), labels_only)
  with pytest.raises(FileNotFoundError, match=r"has no checkpoint in checkpoints/ \(train"):
    experiment.load_trained_run(config, str(labels_only))
  with pytest.raises(FileNotFoundError, match="no checkpoint in checkpoints_best/"):
    experiment.load_trained_run(config, workdir, best=True)  # a mode=train run
  with pytest.raises(ValueError, match=r"step 3 .* saved steps: \[2, 4\]"):
    experiment.load_trained_run(config, workdir, step=3)
  other_priors = tiny_train_config.get_config()
  other_priors.priors = ml_collections.ConfigDict(dict(s_min=0.1, s_max=0.9, aspect_ratios=()))
  with pytest.raises(ValueError, match=r"priors.json: the run was trained with other priors than "
                     r"the config gives .*pass the config \(and overrides\) the run was trained"):
    experiment.load_trained_run(other_priors, workdir)
  # A run from before priors.json: the config's priors, and the checkpoint's shapes say no.
  legacy = tmp_path / "legacy"
  shutil.copytree(workdir, legacy, ignore=shutil.ignore_patterns("priors.json"))
  with pytest.raises(ValueError, match=r"does not fit the model of this config: params"):
    experiment.load_trained_run(other_priors, str(legacy))

  empty = tmp_path / "empty"
  empty.mkdir()
  (empty / "readme.md").write_text("no images here")
  with pytest.raises(ValueError, match=re.escape(f"input folder {empty} holds no")):
    detect.list_images(str(empty))
  with pytest.raises(FileNotFoundError, match="neither an image file nor a folder"):
    detect.list_images(str(tmp_path / "nothing.jpg"))
  assert detect.list_images(str(images / "notes.txt")) == [str(images / "notes.txt")]

  loaded = experiment.load_trained_run(config, workdir)
  with pytest.raises(ValueError, match="none of the 2 input files is a readable image"):
    detect.detect_images(loaded, [str(images / "broken.png"), str(images / "notes.txt")])
  with pytest.raises(ValueError, match="score_threshold"):
    detect.detect_images(loaded, [str(images / "shapes.png")], score_threshold=1.0)
  result = {"file": str(images / "shapes.png"), "width": 160, "height": 120, "detections": []}
  with pytest.raises(ValueError, match="would overwrite the input image"):
    detect.write_outputs([result], str(images), loaded, score_threshold=0.3)
