"""Export (ssd_jax.export, experiments/export.py): each artifact gives the JAX predict function's
detections on the same images, for batch sizes the export never saw."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
import tensorflow as tf

from ssd_jax import experiment, export, overrides
from ssd_jax.data import augment
from tests import fixtures, forkserver, tiny_train_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASS_NAMES = ["circle", "square", "triangle", "cross"]  # the tiny config's synthetic shapes
# Serving code that knows nothing of this package, run with the imports of BLOCKED refused.
BLOCK_IMPORTS = """
import sys
class Block:
  def find_spec(self, name, path=None, target=None):
    if name.split(".")[0] in BLOCKED:
      raise ImportError(f"{name} is blocked")
sys.meta_path.insert(0, Block())
"""
# The SavedModel with TensorFlow and NumPy only (TensorFlow imports JAX when it is installed, and
# would here).
SAVEDMODEL_CLIENT = BLOCK_IMPORTS + """
import numpy as np
import tensorflow as tf
folder, inputs, outputs = sys.argv[1:]
model = tf.saved_model.load(folder)
images = np.load(inputs)
out = {}
for name in ("serving_default", "serving_any_size"):
  result = model.signatures[name](images=tf.constant(images[name]))
  out.update({f"{name}/{k}": v.numpy() for k, v in result.items()})
with open(model.class_names_file.asset_path.numpy().decode()) as f:
  out["class_names"] = np.array(f.read().split())
np.savez(outputs, **out)
assert not set(BLOCKED) & set(sys.modules)
"""
# The StableHLO artifact with JAX and NumPy only: no model code (Flax, this package).
STABLEHLO_CLIENT = BLOCK_IMPORTS + """
import jax
import numpy as np
folder, inputs, outputs = sys.argv[1:]
with open(folder + "/model.stablehlo", "rb") as f:
  exported = jax.export.deserialize(bytearray(f.read()))
np.savez(outputs, **jax.device_get(exported.call(np.load(inputs)["images"])))
assert not set(BLOCKED) & set(sys.modules)
"""


def _client(code: str, blocked: tuple[str, ...], *args) -> None:
  """Runs ``code`` in a fresh Python with the imports of ``blocked`` refused."""
  result = subprocess.run(
      [sys.executable, "-c", f"BLOCKED = {blocked!r}\n{code}", *map(str, args)],
      cwd=args[-1].parent, env=fixtures.subprocess_env(), capture_output=True, text=True,
      timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture
def workdir(trained_workdir):
  """The tiny config's run of 4 steps (tests/conftest.py): checkpoints 2 and 4."""
  return trained_workdir


@pytest.fixture(scope="module")
def run(trained_workdir):
  return experiment.load_trained_run(tiny_train_config.get_config(), trained_workdir)


def _images(batch: int, height: int, width: int, seed: int) -> np.ndarray:
  """Smooth random images with a bright block: detections with distinct scores."""
  rng = np.random.default_rng(seed)
  small = rng.integers(0, 256, (batch, 4, 4, 3)).astype(np.float32)
  images = tf.image.resize(small, (height, width)).numpy()
  images[:, height // 4:height // 2, width // 3:2 * width // 3] = (230, 40, 40)
  return np.clip(np.round(images), 0, 255).astype(np.uint8)


def _jax_detections(run, images: np.ndarray) -> dict[str, np.ndarray]:
  predict = experiment.create_predict_fn(run.config, run.model, run.mesh)
  sharding = jax.sharding.NamedSharding(run.mesh, jax.sharding.PartitionSpec("data"))
  return jax.device_get(predict(run.params, jax.device_put(images, sharding)))


def assert_same_detections(got: dict, want: dict, atol: float = 1e-4) -> None:
  """Per image: the same count, and each wanted detection has an unused match of the same class
  with score and box within ``atol`` (so near-equal scores may come in either order)."""
  assert got["boxes"].shape == want["boxes"].shape
  np.testing.assert_array_equal(got["num_detections"], want["num_detections"])
  for i, n in enumerate(want["num_detections"]):
    assert n > 0
    unused = list(range(n))
    for k in range(n):
      match = [j for j in unused if got["classes"][i, j] == want["classes"][i, k]
               and abs(got["scores"][i, j] - want["scores"][i, k]) <= atol
               and np.all(np.abs(got["boxes"][i, j] - want["boxes"][i, k]) <= atol)]
      assert match, (i, k, want["classes"][i, k], want["scores"][i, k], want["boxes"][i, k])
      unused.remove(match[0])
    np.testing.assert_array_equal(got["classes"][i, n:], 0)  # padding rows


def test_stablehlo_reloads_and_matches_jax_for_any_batch(run, tmp_path):
  out = export.export_run(run, "stablehlo", str(tmp_path / "hlo"))  # cpu, cuda and tpu
  assert sorted(os.listdir(out)) == ["class_names.txt", "export.json", "model.stablehlo"]
  exported = export.load_stablehlo(out)
  assert exported.platforms == ("cpu", "cuda", "tpu")
  assert str(exported.in_avals[0].shape[0]) == "batch"
  images = _images(1, 128, 128, seed=1)
  assert_same_detections(jax.device_get(exported.call(images)), _jax_detections(run, images))
  # Another batch size, in a process that cannot import the model's code.
  images = _images(3, 128, 128, seed=3)
  np.savez(tmp_path / "in.npz", images=images)
  _client(STABLEHLO_CLIENT, ("flax", "ssd_jax", "tensorflow"), out, tmp_path / "in.npz",
          tmp_path / "out.npz")
  assert_same_detections(dict(np.load(tmp_path / "out.npz")), _jax_detections(run, images))
  with open(os.path.join(out, "class_names.txt")) as f:
    assert f.read().split() == CLASS_NAMES
  with open(os.path.join(out, "export.json")) as f:
    metadata = json.load(f)
  assert metadata["image_size"] == 128 and metadata["step"] == 4
  assert metadata["class_names"] == CLASS_NAMES
  assert metadata["decode_settings"]["variances"] == [0.1, 0.2]


def test_savedmodel_runs_in_plain_tensorflow_and_matches_jax(run, tmp_path):
  out = export.export_run(run, "savedmodel", str(tmp_path / "sm"))  # cpu, cuda and tpu
  images = {"serving_default": _images(2, 128, 128, seed=0),
            "serving_any_size": _images(3, 90, 150, seed=1)}
  np.savez(tmp_path / "in.npz", **images)
  _client(SAVEDMODEL_CLIENT, ("jax", "jaxlib", "flax", "ssd_jax"), out, tmp_path / "in.npz",
          tmp_path / "out.npz")
  got = np.load(tmp_path / "out.npz")
  assert list(got["class_names"]) == CLASS_NAMES
  # Any size: warped to 128 x 128 as evaluation and experiments/detect.py do.
  warped = augment.resize_image(images["serving_any_size"], 128).numpy()
  for name, model_input in (("serving_default", images["serving_default"]),
                            ("serving_any_size", warped)):
    outputs = {k: got[f"{name}/{k}"] for k in export.OUTPUTS}
    assert_same_detections(outputs, _jax_detections(run, model_input))


def test_auto_convolutions_are_chosen_per_platform(run):
  """``conv_impl='auto'`` (the configs' default): the CPU program has the Winograd path (its 3x3
  layers are matmuls, not convolution ops), the CUDA one XLA's convolutions, and an artifact
  for both holds both (``lax.platform_dependent`` runs the one of the platform)."""
  auto = dataclasses.replace(run, config=overrides.apply_overrides(
      run.config, {"model.conv_impl": "auto"}))
  count = lambda platforms: export.stablehlo(auto, platforms).mlir_module().count(
      "stablehlo.convolution")
  assert count(("cpu",)) < count(("cuda",)) <= count(("cpu", "cuda"))


def test_command_line_exports_a_step_and_bad_requests_are_clear_errors(run, workdir, tmp_path):
  result = subprocess.run(
      [*forkserver.command("experiments.export"), "--config=tests/tiny_train_config.py",
       f"--workdir={workdir}", "--platforms=cpu", "--format=stablehlo",
       f"--output={tmp_path / 'hlo'}", "--step=2"],
      cwd=ROOT, capture_output=True, text=True, timeout=300, env=fixtures.subprocess_env())
  assert result.returncode == 0, result.stderr[-3000:]
  exported = export.load_stablehlo(str(tmp_path / "hlo"))
  assert exported.platforms == ("cpu",)
  step2 = experiment.load_trained_run(tiny_train_config.get_config(), workdir, step=2)
  images = _images(2, 128, 128, seed=5)
  assert_same_detections(jax.device_get(exported.call(images)), _jax_detections(step2, images))

  # What the command line loads before it writes anything (experiments/cli.py).
  no_checkpoint = tmp_path / "no_checkpoint"
  no_checkpoint.mkdir()
  shutil.copy(os.path.join(workdir, "label_map.json"), no_checkpoint)
  with pytest.raises(FileNotFoundError, match="has no checkpoint"):
    experiment.load_trained_run(tiny_train_config.get_config(), str(no_checkpoint))
  with pytest.raises(ValueError, match="is not empty"):
    export.export_run(run, "stablehlo", str(tmp_path / "hlo"))
  with pytest.raises(ValueError, match="unknown export format 'onnx'.*README"):
    export.export_run(run, "onnx", str(tmp_path / "z"))
  with pytest.raises(ValueError, match="platforms must be"):
    export.export_run(run, "stablehlo", str(tmp_path / "z"), platforms=("gpu",))
  assert not (tmp_path / "z").exists()
