r"""The photometric distortion's cost in the train step (``ssd_jax.photometric.distort``).

  python -m benchmarks.bench_photometric [--sizes=300,128] [--batch=32] [--iters=10]
      [--repeats=3] [--out=benchmarks/results/bench_photometric.json]

The input pipeline only draws each example's photometric values; the train step distorts the
batch. Per image size: the jitted ``distort`` of a uint8 ``[batch, size, size, 3]`` batch with
random values (every op drawn, a footprint of most of the image), against the uint8 -> float32
cast the step does anyway, on the default JAX backend. ``--repeats`` rounds, the two interleaved
(``common.interleave``);
images/s and core-ms per image (seconds x cores / images: on a CPU, what it takes from the
pipeline's cores), median and range.
"""

import os

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from ssd_jax import photometric

_SIZES = flags.DEFINE_list("sizes", ["300", "128"], "Image sides, pixels.")
_BATCH = flags.DEFINE_integer("batch", 32, "Images per batch.")
_ITERS = flags.DEFINE_integer("iters", 10, "Timed calls per round (the median is kept).")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Rounds, the two functions interleaved.")
_OUT = flags.DEFINE_string("out", "benchmarks/results/bench_photometric.json", "JSON output.")


def _inputs(size: int, batch: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
  params = np.stack([rng.uniform(-32, 32, batch), rng.uniform(0.5, 1.5, batch),
                     rng.uniform(0.5, 1.5, batch), rng.uniform(-0.05, 0.05, batch),
                     rng.integers(0, 2, batch), np.zeros(batch)], axis=1).astype(np.float32)
  footprint = np.tile([[size // 10, size // 10, size, size - size // 20]], (batch, 1))
  return jnp.asarray(images), jnp.asarray(params), jnp.asarray(footprint, jnp.int32)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if min(_BATCH.value, _ITERS.value, _REPEATS.value) < 1:
    raise app.UsageError("--batch, --iters and --repeats must be >= 1")
  fns = {"distort": jax.jit(photometric.distort),
         "cast": jax.jit(lambda images, *_: images.astype(jnp.float32))}
  results = []
  for size in (int(s) for s in _SIZES.value):
    args = _inputs(size, _BATCH.value)
    seconds = common.interleave(
        [list(fns)], _REPEATS.value,
        lambda name: common.time_fn(lambda: fns[name](*args).block_until_ready(),
                                    _ITERS.value)["median_s"])
    row = {"image_size": size, "batch": _BATCH.value}
    for name, values in seconds.items():
      rate, spread = common.median_range([_BATCH.value / s for s in values])
      core_ms = common.median_range([s * os.cpu_count() * 1e3 / _BATCH.value for s in values])
      row[name] = {"images_per_s": rate, "images_per_s_range": spread,
                   "core_ms_per_image": core_ms[0], "core_ms_per_image_range": core_ms[1]}
    results.append(row)
    print(f"{size:4d} px  distort {row['distort']['images_per_s']:9.0f} img/s "
          f"({row['distort']['core_ms_per_image']:.2f} core-ms/img)   cast alone "
          f"{row['cast']['images_per_s']:9.0f} img/s ({row['cast']['core_ms_per_image']:.2f})")
  common.write_json(_OUT.value, {"benchmark": "bench_photometric", "results": results})


if __name__ == "__main__":
  app.run(main)
