"""The composition root: every shipped config builds its parts, and config fields reach them."""

import glob
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from ssd_jax import boxes, experiment, models, overrides, priors as priors_lib, run_priors
from ssd_jax.data import label_map as label_map_lib
from tests import fixtures, tiny_train_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(os.path.basename(p)[:-3] for p in glob.glob(
    os.path.join(ROOT, "experiments", "configs", "*.py")) if not p.endswith(("__init__.py",
                                                                              "common.py")))


def test_every_config_file_is_listed():
  assert {"synthetic", "ssd300_voc0712", "ssd512_voc0712", "ssd300_coco", "custom_voc_dir",
          "custom_coco_json", "own_data", "ablation_table2", "ablation_table3"} <= set(CONFIGS)


# Config-string variants (``--config=<file>.py:<variant>``).
VARIANTS = [("custom_voc_dir", "cpu"), ("custom_coco_json", "cpu"), ("own_data", "ssd300")]


@pytest.mark.parametrize("name,variant", [(name, None) for name in CONFIGS] + VARIANTS)
def test_configs_share_the_resize_knobs_and_build(name, variant):
  module = __import__(f"experiments.configs.{name}", fromlist=["get_config"])
  c = module.get_config(variant) if variant else module.get_config()
  c = experiment.in_steps(c, num_train_examples=300)
  for key in ("num_train_steps", "batch_size", "seed"):
    assert key in c
  assert "lr" in c.optimizer
  model = experiment.create_model(c, num_classes=20)
  assert model.prior_spec == run_priors.prior_spec(c)
  assert model.image_size == experiment.image_size(c) > 0
  # The config's shapes are the model's: traced, not computed.
  loc, logits = jax.eval_shape(
      lambda: model.init_with_output(jax.random.key(0), jnp.zeros((1, model.image_size,
                                                                   model.image_size, 3)))[0])
  assert loc.shape == (1, model.prior_spec.num_priors, 4) and logits.shape[-1] == 21
  lr_fn = experiment.create_learning_rate_fn(c)
  if c.freeze_layers:  # the paper configs: frozen ImageNet layers, as their users pass them
    c.pretrained_backbone = "vgg16.npz"
  experiment.create_optimizer(c, lr_fn)
  # (A cosine schedule has barely started to decay there.)
  assert float(lr_fn(c.optimizer.warmup_steps + 1)) == pytest.approx(c.optimizer.lr, rel=1e-3)


def test_model_image_size_sets_the_input_and_the_priors():
  c = tiny_train_config.get_config()
  c.model.image_size = 256
  assert experiment.image_size(c) == 256
  assert run_priors.prior_spec(c) == models.tiny_priors(256)
  c.priors = ml_collections.ConfigDict({"s_min": 0.05, "s_max": 0.8})  # ablations at that size
  assert run_priors.prior_spec(c).feature_map_sizes == (32, 16, 8, 4, 2)
  c.model.name = "ssd300_vgg16"
  with pytest.raises(ValueError, match="takes 300-px inputs only, not 256"):
    experiment.create_model(c, 3)


def test_image_size_and_priors_come_from_the_registry_without_a_model():
  for name, size, num in (("ssd300_vgg16", 300, 8732), ("ssd512_vgg16", 512, 24564),
                          ("ssd_tiny", 128, 1364)):
    c = tiny_train_config.get_config()
    c.model.name = name
    assert experiment.image_size(c) == size
    assert run_priors.prior_spec(c).num_priors == num


def test_unknown_config_variants_are_errors():
  from experiments.configs import custom_voc_dir  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match=r"unknown config variant 'gpu'; valid: \['cpu'\]"):
    custom_voc_dir.get_config("gpu")
  assert custom_voc_dir.get_config("") == custom_voc_dir.get_config()


def test_cpu_recipe_is_the_small_model_at_a_larger_input_with_a_budget_of_steps():
  from experiments.configs import custom_voc_dir, own_data  # pylint: disable=g-import-not-at-top
  c = own_data.get_config()
  other = custom_voc_dir.get_config("cpu")  # the same recipe for an explicit VOC folder
  for key in ("model", "priors", "augment", "optimizer", "batch_size", "num_train_steps"):
    assert c[key] == other[key], key
  assert c.model.name == "ssd_tiny" and experiment.image_size(c) == c.model.image_size > 128
  for images in (50, 2000):  # the same budget, whatever the dataset's size
    assert experiment.in_steps(c, images).num_train_steps == c.num_train_steps


def test_lengths_in_epochs_become_steps():
  c = tiny_train_config.get_config()
  c.batch_size = 8
  c.num_epochs, c.eval.every_epochs, c.checkpoint.every_epochs = 4.5, 1.0, 0.01
  c.optimizer.warmup_epochs, c.optimizer.decay_epochs = 0.0, (1.0, 2.0)
  r = experiment.in_steps(c, num_train_examples=20)  # 2.5 steps per epoch
  assert (r.num_train_steps, r.eval.every_steps, r.checkpoint.every_steps) == (11, 2, 1)
  assert r.optimizer.warmup_steps == 0 and r.optimizer.decay_steps == (2, 5)
  assert c.num_train_steps == 6  # the config itself is unchanged
  assert experiment.in_steps(r, 20) == r  # idempotent
  unset = tiny_train_config.get_config()
  assert experiment.in_steps(unset, 20).num_train_steps == unset.num_train_steps
  c.num_epochs = 0.0
  with pytest.raises(ValueError, match="config.num_epochs must be > 0"):
    experiment.in_steps(c, 20)


def test_cosine_schedule_warms_up_then_decays_to_zero_at_the_last_step():
  c = tiny_train_config.get_config()
  c.num_train_steps, c.optimizer.lr, c.optimizer.schedule = 110, 1.0, "cosine"
  c.optimizer.warmup_steps, c.optimizer.warmup_factor = 10, 0.1
  lr = experiment.create_learning_rate_fn(c)
  expected = lambda t: 0.5 * (1 + np.cos(np.pi * (t - 10) / 100))
  np.testing.assert_allclose([lr(0), lr(5), lr(10), lr(60), lr(110)],
                             [0.1, 0.55, 1.0, expected(60), 0.0], atol=1e-6)
  c.optimizer.schedule = "linear"
  with pytest.raises(ValueError, match="optimizer.schedule must be one of"):
    experiment.create_learning_rate_fn(c)


def test_paper_learning_rate_schedule():
  from experiments.configs import ssd300_voc0712  # pylint: disable=g-import-not-at-top
  lr = experiment.create_learning_rate_fn(ssd300_voc0712.get_config())
  np.testing.assert_allclose([lr(0), lr(50_000), lr(80_001), lr(100_001)],
                             [1e-4, 1e-3, 1e-4, 1e-5], rtol=1e-5)


def test_library_models_default_to_the_fast_convolution():
  model = models.create_model("ssd_tiny", 3)
  assert model.conv_impl == "auto" and model.backbone.conv_impl == "auto"


def test_pretrained_backbone_needs_a_model_with_a_loader():
  c = overrides.apply_overrides(tiny_train_config.get_config(),
                                {"pretrained_backbone": "/some/vgg16.npz"})
  with pytest.raises(ValueError, match="'ssd_tiny' has no pretrained weights"):
    experiment.load_pretrained_backbone(c, {})
  c.pretrained_backbone = ""
  assert experiment.load_pretrained_backbone(c, {"a": 1}) == {"a": 1}


def test_bad_model_fields_are_clear_errors():
  c = tiny_train_config.get_config()
  c.model.dtype = "float16"
  with pytest.raises(ValueError, match="config.model.dtype"):
    experiment.create_model(c, 3)
  c.model.dtype, c.model.name = "float32", "ssd600"
  with pytest.raises(ValueError, match="unknown model 'ssd600'"):
    experiment.image_size(c)


def test_eval_batches_round_up_to_the_device_count():
  mesh = experiment.create_mesh()
  n = mesh.devices.size
  assert experiment.round_to_devices(1, mesh) == n
  assert experiment.round_to_devices(50, mesh) % n == 0
  assert experiment.round_to_devices(50, mesh) - 50 < n


class _EchoModel:
  """Stands in for an SSD: ``apply`` returns the stored ``loc``/``logits`` for every image."""

  def __init__(self, spec):
    self.prior_spec = spec

  def apply(self, variables, images):
    b = images.shape[0]
    p = variables["params"]
    return (jnp.broadcast_to(p["loc"], (b, *p["loc"].shape)),
            jnp.broadcast_to(p["logits"], (b, *p["logits"].shape)))


@pytest.mark.parametrize("variances", [(0.1, 0.2), (0.2, 0.5)])
def test_predict_fn_decodes_with_the_config_variances(variances):
  """decode(encode(box)) round-trips through the predict function (the one evaluation and
  detection use) for the variances the targets were encoded with; nothing is trained."""
  c = overrides.apply_overrides(tiny_train_config.get_config(),
                                {"matching.variances": variances})
  spec = run_priors.prior_spec(c)
  priors = priors_lib.generate(spec)
  box = np.array([0.21, 0.33, 0.58, 0.71], np.float32)
  target = 700  # a prior of the finest map that overlaps the box
  loc = np.zeros((spec.num_priors, 4), np.float32)
  loc[target] = np.asarray(boxes.encode(box[None], priors[target][None], variances))[0]
  logits = np.zeros((spec.num_priors, 2), np.float32)
  logits[:, 0] = 10.0
  logits[target] = (-10.0, 10.0)
  mesh = experiment.create_mesh()
  predict = experiment.create_predict_fn(c, _EchoModel(spec), mesh)
  images = jax.device_put(np.zeros((mesh.devices.size, 128, 128, 3), np.uint8),
                          jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data")))
  out = jax.device_get(predict({"loc": loc, "logits": logits}, images))
  assert int(out["num_detections"][0]) == 1 and int(out["classes"][0, 0]) == 1
  np.testing.assert_allclose(out["boxes"][0, 0], box, atol=1e-5)
  # With the default variances, the non-default encoding would decode elsewhere.
  wrong = np.asarray(boxes.decode(loc[target][None], priors[target][None], (0.1, 0.2)))[0]
  assert (variances == (0.1, 0.2)) == bool(np.allclose(wrong, box, atol=1e-3))


def _voc_config(root):
  from experiments.configs import custom_voc_dir  # pylint: disable=g-import-not-at-top
  return overrides.apply_overrides(custom_voc_dir.get_config(), {"data.root": str(root)})


def test_own_voc_folder_classes_come_from_the_training_split(tmp_path):
  obj = lambda name: fixtures.FixtureObject(name, (2, 3, 30, 20))
  image = lambda i, names: fixtures.FixtureImage(f"im{i}", "", 40, 30, [obj(n) for n in names])
  fixtures.write_voc_folder(str(tmp_path), {
      "trainval": [image(0, ["tree", "car"]), image(1, ["tree"])],
      "test": [image(2, ["car"])], "test_new": [image(3, ["boat", "car"])]})
  data = experiment.create_data(_voc_config(tmp_path))
  assert data.label_map == label_map_lib.LabelMap(("car", "tree"))
  assert data.train.num_examples == 2 and data.eval.num_examples == 1 and data.val is None
  assert data.eval.class_names == ["car", "tree"]
  unseen = _voc_config(tmp_path)
  unseen.data.eval_split = "test_new"
  with pytest.raises(ValueError, match=r"im3\.xml: object 0 has class 'boat', which is not "
                                       r"among the 2 classes of the training data"):
    experiment.create_data(unseen)
  # The label map of a trained run replaces the training split (evaluation only).
  only_eval = experiment.create_data(_voc_config(tmp_path), data.label_map, train=False)
  assert only_eval.train is None and only_eval.eval.num_examples == 1
  missing = _voc_config(tmp_path)
  missing.data.eval_split = "val"
  with pytest.raises(ValueError, match=r"ImageSets/Main/val\.txt \(image sets there: "
                                       r"\['test', 'test_new', 'trainval'\]\)"):
    experiment.create_data(missing)
  devkit = _voc_config(tmp_path / "ImageSets")
  with pytest.raises(ValueError, match="is not a VOC folder: it has no Annotations/"):
    experiment.create_data(devkit)


def test_runs_that_differ_only_in_prior_values_can_train_together():
  from experiments.configs import ablation_priors  # pylint: disable=g-import-not-at-top
  base = ablation_priors.get_config()
  runs = {name: overrides.apply_overrides(base, changes)
          for name, changes in ablation_priors.get_sweep()}
  # k-means priors keep the count, so the heads: only the prior values differ.
  experiment.check_stackable([runs["paper"], runs["kmeans"], runs["kmeans_seed1"]])
  experiment.check_stackable([runs["paper_ratio1"], runs["kmeans_2"]])
  with pytest.raises(ValueError, match=r"configs 0 and 1 cannot train together: they differ in "
                                       r"priors.aspect_ratios \(runs trained together"):
    experiment.check_stackable([runs["paper"], runs["kmeans_2"]])
  with pytest.raises(ValueError, match="no configs"):
    experiment.check_stackable([])
