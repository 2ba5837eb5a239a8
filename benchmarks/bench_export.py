"""Images/s of the exported artifacts next to the JAX predict function, on CPU.

  python -m benchmarks.bench_export [--models ssd_tiny,ssd300_vgg16] [--batches 1,8]
      [--iters 10] [--repeats 3] [--out benchmarks/results/bench_export.json]

Per model (seeded random weights, 20 classes, the config's evaluation settings: the detections
are decoded and NMS'd in every case), the same uint8 images through:
  jax         the jitted predict function of training and evaluation (``experiment``);
  stablehlo   the ``jax.export`` artifact, deserialized and called (``Exported.call``);
  savedmodel  the SavedModel's ``serving_default`` signature in TensorFlow (XlaCallModule).
Each artifact is exported for CPU only. The three are timed interleaved (jax, stablehlo,
savedmodel, jax, ...) ``--repeats`` times, ``--iters`` calls each; reported: the median and range
over the repeats of images/s (each repeat's median call).
"""

import tempfile

from absl import app, flags
import jax
import numpy as np
import tensorflow as tf

from benchmarks import common
from experiments.configs import ssd300_voc0712, synthetic
from ssd_jax import experiment, export, models, overrides, train_step
from ssd_jax.data import label_map as label_map_lib

_MODELS = flags.DEFINE_list("models", ["ssd_tiny", "ssd300_vgg16"], "Model names.")
_BATCHES = flags.DEFINE_list("batches", ["1", "8"], "Batch sizes.")
_ITERS = flags.DEFINE_integer("iters", 10, "Timed calls per repeat.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Interleaved repeats of the comparison.")
_OUT = flags.DEFINE_string("out", "benchmarks/results/bench_export.json", "JSON output.")

_KINDS = ("jax", "stablehlo", "savedmodel")
_CLASSES = tuple(f"class{i}" for i in range(20))


def _run(name: str) -> experiment.TrainedRun:
  """A run of model ``name`` with its config's settings and seeded random weights."""
  base = synthetic.get_config() if name == "ssd_tiny" else ssd300_voc0712.get_config()
  config = overrides.apply_overrides(base, {"model.name": name})
  model = experiment.create_model(config, len(_CLASSES))
  mesh = jax.make_mesh((1,), ("data",), devices=jax.devices()[:1])
  params = jax.jit(lambda: train_step.init_params(model, 0))()
  return experiment.TrainedRun(config=config, model=model, params=params,
                               label_map=label_map_lib.LabelMap(_CLASSES), mesh=mesh, step=0,
                               checkpoint_dir="(random weights)")


def bench_model(name: str, batches: list[int]) -> list[dict]:
  run = _run(name)
  size = run.model.image_size
  predict = experiment.create_predict_fn(run.config, run.model, run.mesh)
  with tempfile.TemporaryDirectory() as tmp:
    hlo = export.load_stablehlo(export.export_run(run, "stablehlo", f"{tmp}/hlo", ("cpu",)))
    serving = tf.saved_model.load(export.export_run(run, "savedmodel", f"{tmp}/sm", ("cpu",)))
    signature = serving.signatures["serving_default"]
    results = []
    for batch in batches:
      images = np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), np.uint8)
      tf_images = tf.constant(images)
      sharded = jax.device_put(images, jax.sharding.NamedSharding(
          run.mesh, jax.sharding.PartitionSpec("data")))
      calls = {"jax": lambda: jax.block_until_ready(predict(run.params, sharded)),
               "stablehlo": lambda: jax.block_until_ready(hlo.call(images)),
               "savedmodel": lambda: signature(images=tf_images)["num_detections"].numpy()}
      rates = {k: [] for k in _KINDS}
      first = {}
      for _ in range(_REPEATS.value):
        for kind in _KINDS:
          t = common.time_fn(calls[kind], _ITERS.value)
          first.setdefault(kind, t["first_call_s"])
          rates[kind].append(batch / t["median_s"])
      row = {"model": name, "image_size": size, "batch": batch}
      for kind in _KINDS:
        row[f"{kind}_images_per_s"], row[f"{kind}_images_per_s_range"] = common.median_range(
            rates[kind])
        row[f"{kind}_first_call_s"] = first[kind]
      print(" ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in row.items() if not k.endswith("_range")))
      results.append(row)
  return results


def main(_):
  unknown = [m for m in _MODELS.value if m not in models.MODEL_NAMES]
  if unknown:
    raise app.UsageError(f"unknown --models {unknown}; valid: {models.MODEL_NAMES}")
  batches = [int(b) for b in _BATCHES.value]
  results = [row for name in _MODELS.value for row in bench_model(name, batches)]
  common.write_json(_OUT.value, {"repeats": _REPEATS.value, "iters": _ITERS.value,
                                 "results": results})


if __name__ == "__main__":
  app.run(main)
