"""A run's priors (``ssd_jax.run_priors``): the layout a config gives (the model's default, a
preset, the linear rule, k-means), the k-means fit, and the workdir's ``priors.json`` checked
against the config."""

import os

import ml_collections
import numpy as np
import pytest

from ssd_jax import experiment, models, overrides, priors as priors_lib, run_priors
from tests import tiny_train_config


def test_a_prior_preset_is_a_layout_of_the_models_source_layers():
  c = tiny_train_config.get_config()
  c.model.name, c.model.prior_preset = "ssd300_vgg16", "SSD300_COCO"
  assert run_priors.prior_spec(c) is priors_lib.SSD300_COCO
  c.model.name = "ssd_tiny"
  with pytest.raises(ValueError, match="prior_preset='SSD300_COCO' is a layout of the source"):
    run_priors.prior_spec(c)


def test_prior_ablation_knobs_select_layers_and_ratios():
  c = tiny_train_config.get_config()
  base = run_priors.prior_spec(c)
  c.priors = ml_collections.ConfigDict({"layers": base.layer_names[1:3], "s_min": 0.3,
                                        "s_max": 0.6, "aspect_ratios": (2.0,)})
  spec = experiment.create_model(c, 4).prior_spec
  assert spec.layer_names == base.layer_names[1:3]
  np.testing.assert_allclose(spec.scales, [0.3, 0.6])
  assert spec.boxes_per_cell == (4, 4)
  del c.priors["aspect_ratios"]  # unset: the model's own ratios of the kept layers
  spec = run_priors.prior_spec(c)
  assert spec.aspect_ratios == base.aspect_ratios[1:3]
  c.priors = ml_collections.ConfigDict({"layers": ("nope",), "s_min": 0.2, "s_max": 0.9})
  with pytest.raises(ValueError, match="priors.layers"):
    run_priors.prior_spec(c)


# ---------------------------------------------------------------------------------------------
# K-means priors (config.priors.kmeans).
# ---------------------------------------------------------------------------------------------
def _kmeans_config(**kmeans):
  c = tiny_train_config.get_config()
  c.priors = ml_collections.ConfigDict({"kmeans": kmeans})
  return c


def _known_shapes(spec):
  """Per layer of ``spec``, as many hand-made ``(w, h)`` as it has boxes per cell (up to 4), of
  a kind a PriorSpec holds exactly: a square ``s``, a second square ``1.25 s``, then boxes of
  area ``s^2`` and ratios 2 and 1/2; each layer's shapes smaller than the next layer's."""
  r2 = np.sqrt(2)
  shapes = [[(s, s), (1.25 * s, 1.25 * s), (s * r2, s / r2), (s / r2, s * r2)][:b]
            for s, b in zip(0.05 * 1.8 ** np.arange(spec.num_layers), spec.boxes_per_cell)]
  return [np.array(layer) for layer in shapes]


def _examples_with_shapes(shapes):
  """An in-memory source (examples as ``analysis.collect_boxes`` reads them): every shape as
  one box, and four times more, one side 2% longer or shorter (their mean is the shape)."""
  examples = []
  for w, h in np.concatenate(shapes):
    for dw, dh in ((0, 0), (0.02, 0), (-0.02, 0), (0, 0.02), (0, -0.02)):
      bw, bh = w * (1 + dw), h * (1 + dh)
      examples.append({"image": np.zeros((128, 128, 3), np.uint8), "labels": np.array([1]),
                       "boxes": np.array([[0.1, 0.2, 0.1 + bw, 0.2 + bh]], np.float32)})
  return examples


def test_kmeans_priors_reproduce_a_known_clustering_with_the_replaced_layouts_counts():
  ratio1 = _kmeans_config()  # the count of config.priors' rule fields: ratio-1 boxes only
  ratio1.priors.update({"s_min": 0.1, "s_max": 0.9, "aspect_ratios": ()})
  assert run_priors.rule_prior_spec(_kmeans_config()) == models.TINY_PRIORS  # kmeans alone
  for c in (_kmeans_config(), ratio1):
    layout = run_priors.rule_prior_spec(c)
    shapes = _known_shapes(layout)
    fitted = run_priors.fit(c, _examples_with_shapes(shapes))
    spec = fitted.spec
    assert spec.boxes_per_cell == layout.boxes_per_cell
    assert spec.num_priors == layout.num_priors
    assert (spec.steps, spec.offset, spec.layer_names, spec.image_size) == (
        layout.steps, layout.offset, layout.layer_names, layout.image_size)
    for got, want in zip(priors_lib.kmeans.cell_box_sizes(spec), shapes):
      np.testing.assert_allclose(got[np.lexsort(got.T)], want[np.lexsort(want.T)], rtol=1e-4)
    assert fitted.kmeans == run_priors.KMEANS_DEFAULTS
    assert fitted.num_boxes == 5 * sum(layout.boxes_per_cell)
    assert fitted.mean_best_iou > 0.95 > fitted.replaced_mean_best_iou
  assert ratio1.priors.aspect_ratios == () and spec.boxes_per_cell == (2,) * 5


def test_kmeans_knob_errors():
  with pytest.raises(ValueError, match="k-means priors are fitted to the training boxes"):
    run_priors.prior_spec(_kmeans_config())
  with pytest.raises(ValueError, match="k-means priors are fitted"):
    experiment.create_model(_kmeans_config(), 3)
  assert experiment.image_size(_kmeans_config()) == 128  # the input does not depend on the fit
  for fields, match in (({"seeds": 1}, r"has no fields \['seeds'\]"),
                        ({"seed": -1}, "kmeans.seed must be an integer >= 0"),
                        ({"max_images": 0}, "kmeans.max_images must be an integer >= 1 or None"),
                        ({"iters": 2.5}, "kmeans.iters must be an integer >= 1")):
    with pytest.raises(ValueError, match=match):
      run_priors.kmeans_settings(_kmeans_config(**fields))
  c = _kmeans_config()
  c.priors = ml_collections.ConfigDict({"kmeans": True})  # on, but not as settings
  with pytest.raises(ValueError, match="must be None or a ConfigDict"):
    run_priors.kmeans_settings(c)
  few = _examples_with_shapes([np.array([[0.1, 0.2]])])  # one shape for 20 priors per location
  with pytest.raises(ValueError, match=r"config.priors.kmeans \(5 training boxes, 20 priors"):
    run_priors.fit(_kmeans_config(), few)
  with pytest.raises(ValueError, match="run_priors.fit: config.priors.kmeans is not set"):
    run_priors.fit(tiny_train_config.get_config(), few)
  # k-means may replace a preset (it has no other config.priors field).
  c = _kmeans_config()
  c.model.name, c.model.prior_preset = "ssd300_vgg16", "SSD300_COCO"
  assert run_priors.rule_prior_spec(c) is priors_lib.SSD300_COCO


def test_ablation_priors_kmeans_runs_have_their_counterparts_prior_count():
  from experiments.configs import ablation_priors  # pylint: disable=g-import-not-at-top
  base = ablation_priors.get_config()
  base.data.num_train_examples = 40  # enough distinct shapes for 20 anchors, in a second
  runs = dict(ablation_priors.get_sweep())
  source = experiment.create_data(base).train
  for kmeans_run, paper_run in (("kmeans", "paper"), ("kmeans_seed1", "paper"),
                                ("kmeans_2", "paper_ratio1")):
    c = overrides.apply_overrides(base, runs[kmeans_run])
    paper = run_priors.prior_spec(overrides.apply_overrides(base, runs[paper_run]))
    spec = run_priors.fit(c, source).spec
    assert spec.boxes_per_cell == paper.boxes_per_cell and spec != paper, kmeans_run
  assert run_priors.prior_spec(base) == models.TINY_PRIORS


def test_a_kmeans_run_saves_its_priors_and_its_evaluation_uses_them(tmp_path):
  from ssd_jax import train  # pylint: disable=g-import-not-at-top
  c = _kmeans_config(max_images=16)
  c.num_train_steps = 2
  train.train_and_evaluate(c, str(tmp_path), mode="train")
  stored = run_priors.read(str(tmp_path))
  assert stored.kmeans == {**run_priors.KMEANS_DEFAULTS, "max_images": 16}
  assert stored.spec.boxes_per_cell == models.TINY_PRIORS.boxes_per_cell
  assert stored.spec != models.TINY_PRIORS
  run = experiment.load_trained_run(c, str(tmp_path))
  assert run.model.prior_spec == stored.spec
  np.testing.assert_array_equal(run.priors, priors_lib.generate(stored.spec))
  # A resumed run reuses the stored layout: no training source is read.
  assert run_priors.fit_or_load(c, None, str(tmp_path)) == stored
  with pytest.raises(ValueError, match="priors were fitted with config.priors.kmeans="):
    experiment.load_trained_run(tiny_train_config.get_config(), str(tmp_path))
  other_seed = _kmeans_config(max_images=16, seed=1)
  with pytest.raises(ValueError, match="pass the config .* the run was trained with"):
    run_priors.load(other_seed, str(tmp_path))
  os.remove(run_priors.path(str(tmp_path)))
  with pytest.raises(FileNotFoundError, match="priors.json not found: config.priors.kmeans"):
    experiment.load_trained_run(c, str(tmp_path))
  # A layout given by the config is stored too, and checked against the config.
  plain = tmp_path / "plain"
  run_priors.save_or_check(run_priors.RunPriors(models.TINY_PRIORS), str(plain))
  assert run_priors.load(tiny_train_config.get_config(), str(plain)) == \
      models.TINY_PRIORS
  ratio1 = overrides.apply_overrides(tiny_train_config.get_config(), {
      "priors": {"s_min": 0.1, "s_max": 0.9, "aspect_ratios": ()}})
  with pytest.raises(ValueError, match="trained with other priors than the config gives"):
    run_priors.load(ratio1, str(plain))
  with pytest.raises(ValueError, match="holds another prior layout"):
    run_priors.save_or_check(run_priors.RunPriors(run_priors.prior_spec(ratio1)), str(plain))
