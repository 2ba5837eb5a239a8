"""Every user path through ``experiments/main.py`` (and ``experiments/detect.py``) as a subprocess:
a user's own VOC folder and COCO JSON, every shipped config on fixture data, the paper recipe with
ImageNet weights, many devices, evaluation of a trained run, and the errors of each."""

import json
import os
import shutil
import subprocess

import jax
import numpy as np
import pytest

from ssd_jax import experiment, train, train_step
from tests import fixtures, forkserver, xla_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
O = fixtures.FixtureObject
# torchvision vgg16 ``features.<i>`` of the 13 convolutions, in order.
VGG_CONVS = {"conv1_1": 0, "conv1_2": 2, "conv2_1": 5, "conv2_2": 7, "conv3_1": 10,
             "conv3_2": 12, "conv3_3": 14, "conv4_1": 17, "conv4_2": 19, "conv4_3": 21,
             "conv5_1": 24, "conv5_2": 26, "conv5_3": 28}
# Two steps of batch 2, one evaluation at the end, XLA's convolutions (they compile fastest).
# Runs with the same shapes (classes, boxes, batch) share compilations through the session's
# persistent XLA cache (tests/conftest.py).
FAST = ("--config.num_train_steps=2", "--config.batch_size=2", "--config.eval.every_steps=2",
        "--config.eval.batch_size=2", "--config.log_every_steps=1",
        "--config.checkpoint.every_steps=2", "--config.optimizer.warmup_steps=0",
        "--config.model.conv_impl=xla", "--config.eval.num_images_to_draw=2",
        "--config.data.max_boxes=8")
# The synthetic configs with a few evaluation and validation images.
SYNTHETIC = (*FAST, "--config.data.num_eval_examples=4", "--config.data.num_val_examples=2")
# The small model in place of a config's own; the paper configs' frozen VGG16 blocks
# (config.freeze_layers) are not its layers, and there are no weights to freeze here.
TINY = (*FAST, "--config.model.name=ssd_tiny", "--config.freeze_layers=()")


def run(module: str, *flags: str, env=None) -> subprocess.CompletedProcess:
  """``python -m module *flags``; the result's ``log`` is its stdout and stderr."""
  result = subprocess.run([*forkserver.command(module), *flags], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env=fixtures.subprocess_env(**(env or {})))
  result.log = result.stdout + result.stderr
  return result


def main(config: str, workdir, *flags: str, env=None, module="experiments.main", cpu=False):
  """``module`` with ``config`` (``cpu``: its ``:cpu`` variant) and ``flags``."""
  return run(module, f"--config=experiments/configs/{config}.py{':cpu' if cpu else ''}",
             f"--workdir={workdir}", *flags, env=env)


def ok(result) -> None:
  assert result.returncode == 0, result.log[-4000:]


def read_json(path):
  with open(path) as f:
    return json.load(f)


def _images(prefix: str, n: int, names) -> list[fixtures.FixtureImage]:
  return [fixtures.FixtureImage(f"{prefix}{i}", "", 90 + 10 * i, 70, [
      O(names[i % len(names)], (5, 8, 50, 60)), O(names[(i + 1) % len(names)], (40, 20, 85, 66))])
          for i in range(n)]


@pytest.fixture(scope="module")
def own_voc(tmp_path_factory):
  """A user's VOC folder: classes that are not VOC's, no VOC<year> level, trainval + test."""
  root = str(tmp_path_factory.mktemp("own_voc"))
  return fixtures.write_voc_folder(root, {"trainval": _images("tr", 4, ["tree", "car"]),
                                          "test": _images("te", 3, ["car", "tree"])})


def test_own_voc_folder_needs_only_its_root(own_voc, tmp_path):
  """The CPU recipe for one's own data, sized in epochs (here 1 epoch of 4 images in batches of
  2), then detection and evaluation of the run, and another run started from it."""
  workdir = tmp_path / "run"
  result = main("custom_voc_dir", workdir, f"--config.data.root={own_voc}", *TINY,
                "--config.num_epochs=1", cpu=True)
  ok(result)
  assert read_json(workdir / "label_map.json")["class_names"] == ["car", "tree"]
  assert "2 classes found in the annotations: ['car', 'tree']" in result.log
  metrics = read_json(workdir / "metrics.json")
  assert metrics["step"] == 2 and metrics["num_images"] == 3
  assert set(metrics["voc07_per_class_ap"]) == {"car", "tree"}
  # No validation split named: the final step is reported and nothing picks a "best" on test.
  assert not (workdir / "checkpoints_best").exists()
  assert not any(key.startswith("val_") for key in metrics)
  assert "No validation split" in result.log

  # Detection needs the run, not the dataset: the class names come from the workdir.
  moved = tmp_path / "elsewhere"
  shutil.move(own_voc, moved)
  try:
    out = tmp_path / "detect"
    ok(run("experiments.detect", "--config=experiments/configs/custom_voc_dir.py:cpu",
           f"--workdir={workdir}", f"--input={moved}/JPEGImages/te0.jpg", f"--output={out}",
           "--score_threshold=0.0", "--batch_size=2", *TINY))
    detections = read_json(out / "detections.json")
    assert detections["class_names"] == ["car", "tree"] and detections["step"] == 2
    assert {d["label"] for d in detections["images"][0]["detections"]} <= {"car", "tree"}
  finally:
    shutil.move(moved, own_voc)

  # --mode=eval on the trained run: the stored label map, the same metrics.
  (workdir / "metrics.json").unlink()
  ok(main("custom_voc_dir", workdir, f"--config.data.root={own_voc}", *TINY,
          "--config.num_epochs=1", "--mode=eval", cpu=True))
  again = read_json(workdir / "metrics.json")
  assert again["step"] == 2 and again["voc07_map"] == pytest.approx(metrics["voc07_map"])
  _starts_from_the_run(workdir, tmp_path)


def _init_params(config, num_classes: int) -> dict[str, np.ndarray]:
  """A run's initial params, flattened; jitted as the trainer does (op by op, SSD300's init
  takes minutes on 2 cores)."""
  model = experiment.create_model(config, num_classes)
  return fixtures.flat_params(jax.jit(lambda: train_step.init_params(model, config.seed))())


def _starts_from_the_run(source_run, tmp_path):
  """``init_from``: at step 0 (lr 0) of a run on other classes ("boat", "tree"), everything but
  the class heads is the source run's, and so are the heads' background and "tree" channels."""
  folder = fixtures.write_voc_folder(str(tmp_path / "boats"), {
      "trainval": _images("b", 2, ["boat", "tree"]), "test": _images("bt", 1, ["tree"])})
  workdir = tmp_path / "from_run"
  ok(main("custom_voc_dir", workdir, f"--config.data.root={folder}", *TINY, "--mode=train",
          "--config.num_epochs=0.5", "--config.optimizer.lr=0.0",
          f"--config.init_from={source_run}", cpu=True))
  old, new = fixtures.checkpoint_params(source_run), fixtures.checkpoint_params(workdir)
  assert set(old) == set(new)
  for key, value in new.items():
    if "_mbox_conf" not in key:
      np.testing.assert_array_equal(value, old[key], err_msg=key)
      continue
    # Source classes (car, tree) -> channels 0 bg, 1 car, 2 tree; here 0 bg, 1 boat, 2 tree.
    boxes = value.shape[-1] // 3
    mine, theirs = value.reshape(*value.shape[:-1], boxes, 3), old[key].reshape(
        *value.shape[:-1], boxes, 3)
    np.testing.assert_array_equal(mine[..., [0, 2]], theirs[..., [0, 2]], err_msg=key)
    if key.endswith("/kernel"):  # boat's channel is this run's own initialization
      assert not np.allclose(mine[..., 1], theirs[..., 1]), key


LAYOUTS = os.path.join(ROOT, "tests", "data", "layouts")


def test_own_data_recognizes_the_layout_and_holds_out_a_test_split(tmp_path):
  """labelImg's YOLO folder (no splits): one flag, a held-out test split, metrics on it."""
  workdir = tmp_path / "run"
  result = main("own_data", workdir, f"--config.data.root={LAYOUTS}/yolo_labelimg", *TINY)
  ok(result)
  assert "yolo dataset (.txt beside the images; classes from classes.txt)" in result.log
  assert "1 of the training images held out as the reported test split (seed 0)" in result.log
  assert read_json(workdir / "label_map.json")["class_names"] == ["apple", "pear"]
  metrics = read_json(workdir / "metrics.json")
  assert metrics["num_images"] == 1 and metrics["num_images_unreadable"] == 0


def test_own_data_with_most_images_missing_stops_naming_them(tmp_path):
  root = tmp_path / "renamed"
  shutil.copytree(f"{LAYOUTS}/voc_devkit", root)
  for name in ("IMG_0001.JPG", "IMG_0002.jpeg"):
    os.rename(root / "JPEGImages" / name, root / "JPEGImages" / f"x{name}")
  workdir = tmp_path / "run"
  result = main("own_data", workdir, f"--config.data.root={root}", *TINY)
  assert result.returncode != 0
  assert "2 of 3 images cannot be found or read" in result.log and "IMG_0001.jpg" in result.log
  assert not (workdir / "checkpoints").exists()


def test_eval_without_a_checkpoint_is_an_error_and_writes_nothing(own_voc, tmp_path):
  missing = tmp_path / "never_trained"
  result = main("custom_voc_dir", missing, f"--config.data.root={own_voc}", *TINY, "--mode=eval")
  assert result.returncode != 0 and "not the workdir of a training run" in result.log
  assert not missing.exists()


@pytest.fixture(scope="module")
def devkit(tmp_path_factory):
  return fixtures.write_detection_fixture(str(tmp_path_factory.mktemp("devkit")))


def test_own_coco_json_stores_category_ids_and_selects_on_validation(devkit, tmp_path):
  workdir = tmp_path / "run"
  pair = lambda prefix: (f"--config.data.{prefix}annotation_file={devkit.coco_json}",
                         f"--config.data.{prefix}image_dir={devkit.coco_image_dir}")
  ok(main("custom_coco_json", workdir, *pair(""), *pair("val_"), *pair("eval_"), *TINY))
  label_map = read_json(workdir / "label_map.json")
  assert label_map["class_names"] == list(fixtures.VOC_CLASSES)
  assert label_map["category_ids"] == [3 * k + 5 for k in range(20)]
  metrics = read_json(workdir / "metrics.json")
  assert {"coco_map", "val_coco_map", "voc07_map"} <= set(metrics)
  assert os.listdir(workdir / "checkpoints_best") == ["2"]


def test_voc_devkit_configs_with_the_small_model(devkit, tmp_path):
  """ssd512_voc0712 is ssd300_voc0712 with the bigger model: with the small model both are one
  run (the same config, checked), so one run covers them; SSD512 itself: test_models.py."""
  configs = [fixtures.experiment_config(c, *TINY) for c in ("ssd512_voc0712", "ssd300_voc0712")]
  assert configs[0].to_json() == configs[1].to_json()
  ok(main("ssd512_voc0712", tmp_path / "run", f"--config.data.root={devkit.voc_root}", *TINY,
          "--config.data.eval_split=trainval"))
  assert read_json(tmp_path / "run" / "metrics.json")["num_images"] == 3


@pytest.mark.parametrize("config,flags", [
    ("ssd300_coco", ("--config.model.prior_preset=",)),  # the VGG16 COCO priors
    ("ssd300_voc0712", ("--config.data.source=tfds", "--config.data.eval_split=test"))])
def test_tfds_configs_on_mock_data(config, flags, tmp_path):
  workdir = tmp_path / "run"
  ok(main(config, workdir, *TINY, *flags, module="tests.mock_tfds_main"))
  assert read_json(workdir / "metrics.json")["num_images"] == 6


@pytest.mark.parametrize("config,flags", [
    ("ablation_table2", ("--config.model.dtype=bfloat16",)),  # and the bfloat16 path
    ("ablation_table3", ("--config.priors.layers=('p4', 'p5', 'p6', 'p7')",)),
    ("ablation_priors", ("--config.priors.kmeans={'seed': 1}",)),
    ("ablation_resolution", ("--config.model.image_size=96",))])
def test_synthetic_sweep_configs(config, flags, tmp_path):
  """Each sweep's base config with one of its runs' knobs."""
  result = main(config, tmp_path / "run", *SYNTHETIC, *flags)
  ok(result)
  assert (tmp_path / "run" / "checkpoints_best").exists()  # they have a validation split
  metrics = read_json(tmp_path / "run" / "metrics.json")
  assert np.isfinite(metrics["voc07_map"]) and np.isfinite(metrics["val_voc07_map"])
  assert ("expect it slower than float32" in result.log) == ("dtype=bfloat16" in " ".join(flags))
  spec = read_json(tmp_path / "run" / "priors.json")["spec"]
  if config == "ablation_table3":
    assert spec["layer_names"] == ["p4", "p5", "p6", "p7"]
  if config == "ablation_priors":
    assert read_json(tmp_path / "run" / "priors.json")["kmeans"]["seed"] == 1
  if config == "ablation_resolution":
    assert spec["image_size"] == 96


def test_many_devices_train_and_evaluate_like_one(tmp_path):
  """The default config on 8 CPU devices (1 image of the global batch of 8 per device; eval batch
  50, padded to 56) trains and evaluates like one device, here in this process: the same
  parameters after its steps (the loss is normalized by the global batch's positives and the
  gradients are summed over devices, so only the float summation order differs), and the same
  metrics from its checkpoint.

  Plain SGD rather than the config's AdamW: Adam divides by the gradient's magnitude, which turns
  the summation-order noise of near-zero gradients into O(lr) parameter differences and would
  hide what is tested."""
  flags = (*FAST, "--config.batch_size=8", "--config.eval.batch_size=50",
           "--config.data.num_eval_examples=20", "--config.data.num_val_examples=10",
           "--config.optimizer.name=sgd")
  eight = tmp_path / "eight"
  result = main("synthetic", eight, *flags, env={"XLA_FLAGS": xla_flags.with_test_xla_flags(
      "--xla_force_host_platform_device_count=8")})
  ok(result)
  assert "CpuDevice(id=7)]" in result.log  # main.py logs its devices
  on_eight = read_json(eight / "metrics.json")
  assert on_eight["num_images"] == 20 and on_eight["val_num_images"] == 10

  config, one = fixtures.experiment_config("synthetic", *flags), tmp_path / "one"
  assert jax.device_count() == 1 and config.num_train_steps == 2
  train.train_and_evaluate(config, str(one), mode="train")
  final_one, final_eight = fixtures.checkpoint_params(one, 2), fixtures.checkpoint_params(eight, 2)
  assert final_one.keys() == final_eight.keys() and len(final_one) > 10
  for key, value in final_one.items():
    np.testing.assert_allclose(final_eight[key], value, rtol=1e-5, atol=1e-6, err_msg=key)
  # That tolerance is far below what the steps moved the parameters.
  assert fixtures.largest_change(_init_params(config, 4), final_one) > 1e-3

  on_one = train.train_and_evaluate(config, str(eight), mode="eval")  # the 8-device checkpoint
  for key in ("voc07_map", "voc_map", "val_voc07_map"):
    assert on_one[key] == pytest.approx(on_eight[key], abs=1e-6), key


def _torchvision_vgg16(rng) -> dict[str, np.ndarray]:
  """A torchvision ``vgg16`` state dict of random values with the real shapes. The two big fc
  matrices (0.5 GB) repeat a random block of a prime length: drawing them all takes seconds."""
  widths = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
  sd, cin = {}, 3
  for i, width in zip(VGG_CONVS.values(), widths):
    sd[f"features.{i}.weight"] = rng.normal(0, 0.05, (width, cin, 3, 3)).astype(np.float32)
    sd[f"features.{i}.bias"] = rng.normal(0, 0.05, width).astype(np.float32)
    cin = width
  block = rng.normal(0, 0.01, 1021).astype(np.float32)
  sd["classifier.0.weight"] = np.resize(block, (4096, 512 * 49))
  sd["classifier.0.bias"] = rng.normal(0, 0.05, 4096).astype(np.float32)
  sd["classifier.3.weight"] = np.resize(block[::-1], (4096, 4096))
  sd["classifier.3.bias"] = rng.normal(0, 0.05, 4096).astype(np.float32)
  return sd


def test_paper_recipe_starts_from_the_imagenet_weights(devkit, tmp_path):
  """ssd300_voc0712 with its real model, its frozen blocks and ``pretrained_backbone``: at step 0
  (lr 0) the backbone holds the torchvision weights (fc6/fc7 subsampled, kernels OIHW -> HWIO),
  and every other parameter is the run's own initialization."""
  from experiments.configs import ssd300_voc0712  # pylint: disable=g-import-not-at-top

  sd = _torchvision_vgg16(np.random.default_rng(0))
  weights = tmp_path / "vgg16.npz"
  np.savez(weights, **sd)  # 0.5 GB uncompressed: compressing takes 7 s
  workdir = tmp_path / "run"
  # One step of the real model (only compilation takes time) and no evaluation (the config's
  # evaluation runs in the tests above).
  result = main("ssd300_voc0712", workdir, f"--config.data.root={devkit.voc_root}", *FAST,
                "--config.num_train_steps=1", "--config.batch_size=1", "--config.optimizer.lr=0.0",
                "--config.data.eval_split=trainval", f"--config.pretrained_backbone={weights}",
                "--mode=train")
  ok(result)
  # Caffe's recipe: the first two VGG16 blocks stay at the ImageNet weights (test_train_step.py).
  assert ("Frozen at their loaded values (no gradient, no update): ['conv1_1', 'conv1_2', "
          "'conv2_1', 'conv2_2']") in result.log
  restored = fixtures.checkpoint_params(workdir, 1)
  hwio = lambda w: np.transpose(w, (2, 3, 1, 0))
  for name, i in VGG_CONVS.items():
    np.testing.assert_array_equal(restored[f"backbone/{name}/kernel"],
                                  hwio(sd[f"features.{i}.weight"]))
    np.testing.assert_array_equal(restored[f"backbone/{name}/bias"], sd[f"features.{i}.bias"])
  fc6 = sd["classifier.0.weight"].reshape(4096, 512, 7, 7)[::4, :, ::3, ::3]
  np.testing.assert_array_equal(restored["backbone/fc6/kernel"], hwio(fc6))
  np.testing.assert_array_equal(restored["backbone/fc6/bias"], sd["classifier.0.bias"][::4])
  fc7 = sd["classifier.3.weight"][::4, ::4, None, None]
  np.testing.assert_array_equal(restored["backbone/fc7/kernel"], hwio(fc7))
  np.testing.assert_array_equal(restored["backbone/fc7/bias"], sd["classifier.3.bias"][::4])

  loaded = {*VGG_CONVS, "fc6", "fc7"}
  untouched = {k: v for k, v in _init_params(ssd300_voc0712.get_config(), 20).items()
               if k.split("/")[1] not in loaded}
  assert any(k.startswith("conv4_3_mbox") for k in untouched)  # the heads
  for key, value in untouched.items():
    np.testing.assert_array_equal(restored[key], value, err_msg=key)
