"""SSD network throughput on the default JAX backend: forward, train step, forward + detect.

  python -m benchmarks.bench_model [--models ssd300_vgg16,ssd_tiny] [--batch 8] [--iters 5]
      [--dtype float32|bfloat16] [--conv_impl auto|xla|cpu_fast|winograd6]
      [--functions forward --functions detect ...] [--repeats 1] [--hlo_dir DIR]
      [--profile_dir DIR] [--out benchmarks/results/bench_model.json]

Per model, three jitted functions on a batch of random images with 1..8 random boxes each:
  forward  ``model.apply`` (normalization, backbone, heads);
  train    targets (``matching.encode_targets``, vmapped), ``losses.multibox_loss``, gradient and
           an optax SGD-momentum update (the paper's optimizer);
  detect   forward + ``postprocess.decode_detections`` (softmax, per-class NMS, top 200).
``--functions`` measures a subset (only those are compiled). Reported: images/s (median over
``--iters`` calls, and the calls' median and range as ``FUNCTION_images_per_s_calls``), compile
seconds (``lower().compile()``) and the peak resident memory of the process. With several
models each runs in its own subprocess so that the peak memory belongs to one model.
``--repeats N`` runs every model N times that way, interleaved (model after model, round after
round), and gives the median and range over the runs of each figure (``FIGURE_range`` in the
JSON, whose ``runs`` keeps every run). ``--hlo_dir`` writes each compiled function's optimized
HLO there (``MODEL_FUNCTION_DTYPE_bBATCH.hlo.txt``), ``--profile_dir`` a ``jax.profiler`` trace
of its timed calls (a folder of that name): where the time goes, readable after the run (a
traced run's figures carry the profiler's cost).
"""

import os
import sys
import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import common
from ssd_jax import losses, matching, models, postprocess, priors

_MODELS = flags.DEFINE_list("models", ["ssd300_vgg16", "ssd_tiny"], "Model names.")
_BATCH = flags.DEFINE_integer("batch", 8, "Images per batch.")
_ITERS = flags.DEFINE_integer("iters", 5, "Timed calls per function.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Computation dtype.")
_CONV_IMPL = flags.DEFINE_enum("conv_impl", "auto", list(models.CONV_IMPLS),
                               "Convolution implementation (see ssd_jax.models.conv).")
_CLASSES = flags.DEFINE_integer("num_classes", 20, "Object classes (logits have one more).")
_FUNCTIONS = ("forward", "train", "detect")
_MEASURE = flags.DEFINE_multi_enum("functions", list(_FUNCTIONS), _FUNCTIONS,
                                   "Functions to compile and time (repeat the flag for several).")
_REPEATS = flags.DEFINE_integer("repeats", 1, "Runs of every model, interleaved.")
_HLO_DIR = flags.DEFINE_string("hlo_dir", "", "Folder for the optimized HLO of each function.")
_PROFILE_DIR = flags.DEFINE_string("profile_dir", "", "Folder for profiler traces of the calls.")
_OUT = flags.DEFINE_string("out", "benchmarks/results/bench_model.json", "JSON output.")

_MAX_BOXES = 8


def _measured() -> list[str]:
  """The ``--functions`` asked for, in table order."""
  return [f for f in _FUNCTIONS if f in _MEASURE.value]


def _inputs(rng: np.random.Generator, batch: int, size: int, num_classes: int):
  images = rng.integers(0, 256, (batch, size, size, 3)).astype(np.float32)
  xy = rng.uniform(0, 0.7, (batch, _MAX_BOXES, 2))
  boxes = np.concatenate([xy, xy + rng.uniform(0.05, 0.3, (batch, _MAX_BOXES, 2))], -1)
  counts = rng.integers(1, _MAX_BOXES + 1, batch)
  labels = np.where(np.arange(_MAX_BOXES)[None] < counts[:, None],
                    rng.integers(1, num_classes + 1, (batch, _MAX_BOXES)), 0)
  return images, boxes.clip(0, 1).astype(np.float32), labels.astype(np.int32)


def bench_one(name: str) -> dict:
  dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[_DTYPE.value]
  model = models.create_model(name, _CLASSES.value, dtype=dtype, conv_impl=_CONV_IMPL.value)
  prior_boxes = jnp.asarray(priors.generate(model.prior_spec))
  images, boxes, labels = (jax.device_put(x) for x in _inputs(
      np.random.default_rng(0), _BATCH.value, model.image_size, _CLASSES.value))
  params = jax.jit(model.init)(jax.random.key(0), images[:1])["params"]
  tx = optax.sgd(1e-3, momentum=0.9)
  opt_state = tx.init(params)

  def forward(params, images):
    return model.apply({"params": params}, images)

  def train(params, opt_state, images, boxes, labels):
    loc_t, cls_t = jax.vmap(
        lambda b, l: matching.encode_targets(b, l, prior_boxes))(boxes, labels)

    def loss_fn(p):
      loc, logits = model.apply({"params": p}, images, train=True)
      return losses.multibox_loss(loc, logits, loc_t, cls_t)[0]

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  def detect(params, images):
    return postprocess.decode_detections(*forward(params, images), prior_boxes)

  calls = {"forward": (forward, (params, images)),
           "train": (train, (params, opt_state, images, boxes, labels)),
           "detect": (detect, (params, images))}
  result = {"model": name, "batch": _BATCH.value, "dtype": _DTYPE.value,
            "conv_impl": _CONV_IMPL.value,
            "image_size": model.image_size, "num_priors": int(prior_boxes.shape[0]),
            "num_params": sum(int(x.size) for x in jax.tree.leaves(params))}
  for fn_name in _measured():
    fn, args = calls[fn_name]
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    result[f"{fn_name}_compile_s"] = time.perf_counter() - start
    tag = f"{name}_{fn_name}_{_DTYPE.value}_b{_BATCH.value}"
    common.dump_hlo(compiled, _HLO_DIR.value, tag)
    # Train steps are timed from the same state: the cost does not depend on the values.
    with common.trace(_PROFILE_DIR.value, tag):
      t = common.time_fn(lambda: jax.block_until_ready(compiled(*args)), _ITERS.value)
    result[f"{fn_name}_images_per_s"] = _BATCH.value / t["median_s"]
    result[f"{fn_name}_ms_per_batch"] = t["median_s"] * 1e3
    result[f"{fn_name}_images_per_s_calls"] = common.spread(
        [_BATCH.value / s for s in t["times_s"]])
  result["peak_rss_mib"] = common.peak_rss_mib()
  return result


def _run_isolated(name: str) -> dict:
  """Runs one model in a fresh interpreter with the same flags (its own peak memory and
  compilation caches)."""
  return common.run_isolated("benchmarks.bench_model",
                             [*sys.argv[1:], f"--models={name}", "--repeats=1"])


def main(_):
  unknown = [m for m in _MODELS.value if m not in models.MODEL_NAMES]
  if unknown:
    raise app.UsageError(f"unknown --models {unknown}; valid: {models.MODEL_NAMES}")
  if _REPEATS.value < 1:
    raise app.UsageError("--repeats must be >= 1")
  if len(_MODELS.value) == 1 and _REPEATS.value == 1:
    runs = [bench_one(_MODELS.value[0])]
  else:  # interleaved: machine noise spreads over every model alike
    runs = [_run_isolated(name) for _ in range(_REPEATS.value) for name in _MODELS.value]
  measured = _measured()
  figures = [f"{f}_{figure}" for f in measured
             for figure in ("images_per_s", "ms_per_batch", "compile_s")]
  results = common.summarize(runs, ("model",), [*figures, "peak_rss_mib"],
                             per_run=[f"{f}_images_per_s_calls" for f in measured])
  within = _REPEATS.value == 1  # one run per row: the spread of its calls; each run's in "runs"

  def cell(row: dict, f: str) -> str:
    low_high = (row[f"{f}_images_per_s_calls"]["range"] if within
                else row[f"{f}_images_per_s_range"])
    return f"{common.format_spread(row[f'{f}_images_per_s'], low_high):>21s}"

  header = (f"{'model':14s} {'batch':>5s} {'dtype':>8s} " + " ".join(
      f"{f + ' img/s':>21s}" for f in measured) + " " + " ".join(
          f"{f[:5] + ' comp s':>12s}" for f in measured) + f" {'peak MiB':>9s}")
  print(f"backend {jax.default_backend()}, {os.cpu_count()} cores; " + (
      f"median [range] of {_ITERS.value} calls" if within else
      f"median [range] of {_REPEATS.value} runs, each the median of {_ITERS.value} calls"))
  print(header)
  for r in results:
    print(f"{r['model']:14s} {r['batch']:5d} {r['dtype']:>8s} " + " ".join(
        cell(r, f) for f in measured)
          + " " + " ".join(f"{r[f + '_compile_s']:12.1f}" for f in measured)
          + f" {r['peak_rss_mib']:9.0f}")
  common.write_json(_OUT.value, {"benchmark": "bench_model", "repeats": _REPEATS.value,
                                 "results": results, "runs": runs})


if __name__ == "__main__":
  app.run(main)
