"""Matching + target encoding + multibox loss: jitted JAX vs the loop-based NumPy reference.

  python -m benchmarks.bench_targets [--batch 32] [--max_boxes 50] [--mode per_gt] [--iters 20]
      [--ref_images 1] [--repeats 3] [--out benchmarks/results/bench_targets.json]

Batch of ``--batch`` images, SSD300 priors (8732), each image with 1..``--max_boxes`` real boxes
padded to ``--max_boxes``. The NumPy reference (tests/reference_ssd.py, one prior and one box at
a time) is timed on ``--ref_images`` images and reported as images/s too. The two alternate
``--repeats`` times (the order swapped every repeat); reported: the median and range over the
repeats of each one's images/s (JAX: the median of ``--iters`` calls) and of the speed-up.
"""

import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from ssd_jax import losses, matching, priors
from tests import reference_ssd as ref

_BATCH = flags.DEFINE_integer("batch", 32, "Images per batch.")
_MAX_BOXES = flags.DEFINE_integer("max_boxes", 50, "Padded ground-truth rows per image.")
_CLASSES = flags.DEFINE_integer("num_classes", 20, "Object classes (logits have one more).")
_MODE = flags.DEFINE_enum("mode", "per_gt", matching.MATCH_MODES, "Matching mode.")
_ITERS = flags.DEFINE_integer("iters", 20, "Timed iterations.")
_REF_IMAGES = flags.DEFINE_integer("ref_images", 1, "Images timed with the NumPy reference.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Alternating repeats of both timings.")
_OUT = flags.DEFINE_string("out", "benchmarks/results/bench_targets.json", "JSON output.")


def _batch(rng, b, m, p, c):
  xy = rng.uniform(0, 0.8, (b, m, 2))
  gt = np.concatenate([xy, xy + rng.uniform(0.02, 0.5, (b, m, 2))], -1).clip(0, 1)
  counts = rng.integers(1, m + 1, b)
  labels = np.where(np.arange(m)[None] < counts[:, None], rng.integers(1, c + 1, (b, m)), 0)
  return (gt.astype(np.float32), labels.astype(np.int32),
          rng.normal(size=(b, p, 4)).astype(np.float32),
          rng.normal(size=(b, p, c + 1)).astype(np.float32))


def main(_):
  p = priors.generate(priors.SSD300_VOC)
  gt, labels, loc_pred, logits = _batch(np.random.default_rng(0), _BATCH.value, _MAX_BOXES.value,
                                        len(p), _CLASSES.value)

  @jax.jit
  def step(gt, labels, loc_pred, logits):
    loc_t, cls_t = jax.vmap(lambda g, l: matching.encode_targets(g, l, jnp.asarray(p),
                                                                 mode=_MODE.value))(gt, labels)
    return losses.multibox_loss(loc_pred, logits, loc_t, cls_t)[0]

  args = [jax.device_put(x) for x in (gt, labels, loc_pred, logits)]
  start = time.perf_counter()
  step(*args).block_until_ready()
  compile_s = time.perf_counter() - start

  def jax_rate():
    t = common.time_fn(lambda: step(*args).block_until_ready(), _ITERS.value)
    return _BATCH.value / t["median_s"]

  def reference_rate():
    start = time.perf_counter()
    for b in range(_REF_IMAGES.value):
      idx = ref.match_reference(gt[b], labels[b], p, 0.5, _MODE.value)
      cls_t = np.where(idx >= 0, labels[b][idx], 0)[None]
      loc_t = np.zeros((1, len(p), 4))
      for i in np.flatnonzero(idx >= 0):
        loc_t[0, i] = ref.encode_one(gt[b, idx[i]], p[i])
      ref.multibox_loss_reference(loc_pred[b:b + 1], logits[b:b + 1], loc_t, cls_t)
    return _REF_IMAGES.value / (time.perf_counter() - start)

  rates = {"jax": [], "numpy_reference": []}
  timers = {"jax": jax_rate, "numpy_reference": reference_rate}
  for repeat in range(_REPEATS.value):
    for name in common.rotation(list(timers), repeat):
      rates[name].append(timers[name]())
  speedup = common.spread([j / r for j, r in zip(rates["jax"], rates["numpy_reference"])])
  jax_ips, ref_ips = (common.spread(rates[name]) for name in timers)
  print(f"batch {_BATCH.value}, {len(p)} priors, {_MAX_BOXES.value} padded boxes, "
        f"mode {_MODE.value}; images/s, median [range] of {_REPEATS.value} repeats")
  cell = lambda s, fmt: common.format_spread(s["median"], s["range"], fmt)
  print(f"  jax (jit, {jax.default_backend()}): {cell(jax_ips, '.1f')}  "
        f"(median {_BATCH.value / jax_ips['median'] * 1e3:.1f} ms/batch, compile+first "
        f"{compile_s:.2f} s)")
  print(f"  numpy loop reference:  {cell(ref_ips, '.3f')}  ({_REF_IMAGES.value} images)")
  print(f"  speed-up: {cell(speedup, '.0f')}x")
  common.write_json(_OUT.value, {
      "benchmark": "bench_targets", "batch": _BATCH.value, "num_priors": len(p),
      "max_boxes": _MAX_BOXES.value, "mode": _MODE.value, "iters": _ITERS.value,
      "ref_images": _REF_IMAGES.value, "repeats": _REPEATS.value,
      "jax_images_per_s": jax_ips, "jax_ms_per_batch": _BATCH.value / jax_ips["median"] * 1e3,
      "compile_s": compile_s, "numpy_reference_images_per_s": ref_ips, "speedup": speedup,
      "raw": rates, "peak_rss_mib": common.peak_rss_mib()})


if __name__ == "__main__":
  flags.register_validator("repeats", lambda n: n >= 1, "--repeats must be >= 1")
  flags.register_validator("iters", lambda n: n >= 1, "--iters must be >= 1")
  flags.register_validator("ref_images", lambda n: n >= 1, "--ref_images must be >= 1")
  app.run(main)
