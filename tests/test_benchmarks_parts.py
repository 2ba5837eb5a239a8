"""benchmarks/parts.py: the benchmarks' parts are the experiment's, built from a config."""

import jax
import numpy as np
import pytest

from benchmarks import parts
from experiments.configs import common as configs_common
from ssd_jax import experiment


def test_config_is_the_models_recipe_on_synthetic_data_at_its_input_size():
  c = parts.config("ssd300_vgg16", batch=4, dtype="bfloat16", conv_impl="xla")
  # The paper recipe (SGD, weight decay, VOC's padding) with the benchmark's settings.
  assert (c.model.name, c.batch_size, c.model.dtype, c.model.conv_impl) == (
      "ssd300_vgg16", 4, "bfloat16", "xla")
  assert c.optimizer.name == "sgd" and c.optimizer.weight_decay == 5e-4
  assert c.data.source == "synthetic" and c.data.synthetic.image_size == 300
  assert c.data.max_boxes == 50 and c.freeze_layers == ()
  frozen = parts.config("ssd300_vgg16", batch=4, freeze=True)
  assert frozen.freeze_layers == configs_common.VGG16_FROZEN_LAYERS
  # Frozen layers keep loaded weights: without any, the experiment refuses the config.
  with pytest.raises(ValueError, match="freeze_layers"):
    experiment.frozen_layers(frozen)
  # A folder of one's own photos (read as own_data reads it) replaces the synthetic shapes; the
  # model's own input size and padding stay.
  voc = parts.config("ssd_tiny", batch=2, voc_root="/data/mine")
  assert voc.data.source == "folder" and voc.data.root == "/data/mine"
  assert voc.data.max_boxes == parts.config("ssd_tiny", batch=2).data.max_boxes
  assert voc.model.conv_impl == "auto"


def test_compiled_functions_run_the_experiments_step_and_predict_fn_on_the_first_batch():
  c = parts.config("ssd_tiny", batch=2)
  batch = parts.first_batch(c)
  assert batch["image"].shape == (2, 128, 128, 3) and batch["image"].dtype == np.uint8
  assert batch["boxes"].shape == (2, c.data.max_boxes, 4) and "photometric" in batch
  built = parts.compiled(c, batch)
  assert set(built.calls) == set(parts.FUNCTIONS)
  facts = built.facts
  assert facts["model"] == "ssd_tiny" and facts["image_size"] == 128
  assert all(facts[f"{name}_compile_s"] > 0 for name in parts.FUNCTIONS)
  loc, logits = built.calls["forward"]()
  assert loc.shape == (2, facts["num_priors"], 4) and logits.shape[:2] == (2, facts["num_priors"])
  assert np.isfinite(float(built.calls["targets"]()))
  # Each train call takes the newest state (the step donates it) and gives the step's metrics.
  first, second = built.calls["train"](), built.calls["train"]()
  assert set(first) >= {"loss", "grad_norm", "lr"} and np.isfinite(float(second["loss"]))
  detections = built.calls["detect"]()  # reads the parameters the train calls left
  assert detections["boxes"].shape == (2, c.eval.max_detections, 4)
  assert jax.device_get(detections["num_detections"]).shape == (2,)
