"""Images/s of the exported artifacts next to the JAX predict function, on CPU.

  python -m benchmarks.bench_export [--models ssd_tiny,ssd300_vgg16] [--batches 1,8]
      [--iters 10] [--repeats 3] [--out benchmarks/results/bench_export.json]

Per model, a run folder written by one training step of the model's own config
(``parts.write_run``) and loaded as ``experiments/export.py`` loads it
(``experiment.load_trained_run``), with the config's evaluation settings (the detections are
decoded and NMS'd in every case); the same uint8 images through:
  jax         the jitted predict function of training and evaluation (``experiment``);
  stablehlo   the ``jax.export`` artifact, deserialized and called (``Exported.call``);
  savedmodel  the SavedModel's ``serving_default`` signature in TensorFlow (XlaCallModule).
Each artifact is exported for CPU only. The three are timed interleaved (``common.interleave``)
``--repeats`` times, ``--iters`` calls each; reported: the median and range over the repeats of
images/s (each repeat's median call).
"""

import tempfile

from absl import app, flags
import jax
import numpy as np
import tensorflow as tf

from benchmarks import common, parts
from ssd_jax import experiment, export, models

_MODELS = flags.DEFINE_list("models", ["ssd_tiny", "ssd300_vgg16"], "Model names.")
_BATCHES = flags.DEFINE_list("batches", ["1", "8"], "Batch sizes.")
_ITERS = flags.DEFINE_integer("iters", 10, "Timed calls per repeat.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Interleaved repeats of the comparison.")
_OUT = flags.DEFINE_string("out", "benchmarks/results/bench_export.json", "JSON output.")

_KINDS = ("jax", "stablehlo", "savedmodel")


def bench_model(name: str, batches: list[int]) -> list[dict]:
  with tempfile.TemporaryDirectory() as tmp:
    cfg = parts.config(name, batch=max(batches))
    parts.write_run(cfg, f"{tmp}/run")
    run = experiment.load_trained_run(cfg, f"{tmp}/run")
    size = run.model.image_size
    predict = experiment.create_predict_fn(run.config, run.model, run.mesh)
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
      timings = common.interleave([_KINDS], _REPEATS.value,
                                  lambda kind: common.time_fn(calls[kind], _ITERS.value))
      row = {"model": name, "image_size": size, "batch": batch}
      for kind in _KINDS:
        row[f"{kind}_images_per_s"], row[f"{kind}_images_per_s_range"] = common.median_range(
            [batch / t["median_s"] for t in timings[kind]])
        row[f"{kind}_first_call_s"] = timings[kind][0]["first_call_s"]
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
