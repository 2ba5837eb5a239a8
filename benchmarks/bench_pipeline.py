r"""Input pipeline throughput (Caffe augmentation) beside the train step's: is input the bottleneck?

  python -m benchmarks.bench_pipeline [--cases=voc,synthetic300,synthetic128] [--batch=32]
      [--batches=20] [--warmup_batches=5] [--images=200] [--voc_epoch=16551]
      [--train_models=ssd_tiny]
      [--train_steps=10] [--repeats=1] [--augment_revs=e9e2428,HEAD]
      [--out=benchmarks/results/bench_pipeline.json]

Pipeline cases: ``pipeline.train_iterator`` with the full Caffe augmentation (the configs'
``AugmentConfig()``), ``--batch`` examples per batch, timed over ``--batches`` batches after
``--warmup_batches`` (the first includes building the tf.data pipeline, reported separately),
``--repeats`` times interleaved (``common.interleave``; median and range; per core: the median
over ``os.cpu_count()``):
  voc           ``--images`` photo-like JPEGs of 375-500 px a side, quality 95 (``cluttered_voc``,
                the stand-in for one's own photos, 5-30 objects each), written as one VOC folder
                to a temporary directory, read with ``voc_directory`` and repeated to
                ``--voc_epoch`` examples (default VOC07+12's epoch; a user's own small folder:
                ``--images=54 --voc_epoch=54``); output 300 px (SSD300), ``max_boxes`` 50 as
                in ``ssd300_voc0712``.
  synthetic300  the built-in synthetic shapes (the synthetic config) generated at 300 px, out 300.
  synthetic128  the synthetic config as is: 128 px, out 128 (the ``ssd_tiny`` default run).
``--augment_revs`` compares ``ssd_jax/data/augment.py`` at those git revisions, inside this one
process (each loaded from ``git show REV:...`` in place of ``train_preprocess``; the rest of the
pipeline is this checkout's), every case and revision interleaved: the median and range of each
revision's examples/s, and of its ratio to the first revision per repeat. Revisions from before
the photometric distortion moved to the train step distort in the pipeline; their examples get
neutral photometric values, so that the batches have the same keys. Each run also reports
examples per CPU-second of the process (``time.process_time``), which other tenants of a shared
VM disturb less than the wall clock.
Train step: ``benchmarks.bench_train --measure=step`` (the trainer's jitted step on its mesh, one
device-resident batch, per-model default batch: ``ssd_tiny`` 32, VGG16 8 on CPU) for each of
``--train_models``, in a subprocess. A model is input-bound on a case with its input size when
the pipeline delivers fewer examples/s than the step consumes.

On CPU both compete for the same cores, so the two figures are upper bounds of what runs
together; ``benchmarks.bench_train`` measures the combination (``end_to_end``).
"""

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Optional

from absl import app, flags
import numpy as np
import tensorflow as tf

from benchmarks import common
from experiments.configs import ssd300_voc0712, synthetic as synthetic_config
from ssd_jax import models, photometric
from ssd_jax.data import augment, cluttered_voc, pipeline, registry, sources, voc_directory

_CASES = ("voc", "synthetic300", "synthetic128")
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_CASE_LIST = flags.DEFINE_list("cases", list(_CASES), f"Pipeline cases, of {_CASES}.")
_BATCH = flags.DEFINE_integer("batch", 32, "Examples per pipeline batch.")
_BATCHES = flags.DEFINE_integer("batches", 20, "Timed batches per pipeline case.")
_WARMUP = flags.DEFINE_integer("warmup_batches", 5, "Batches read before timing (at least 1).")
_IMAGES = flags.DEFINE_integer("images", 200, "VOC-style JPEGs written for the voc case.")
_VOC_EPOCH = flags.DEFINE_integer(
    "voc_epoch", 16551, "Examples per epoch of the voc case (the JPEGs, repeated); default "
    "VOC07+12 trainval's.")
_TRAIN_MODELS = flags.DEFINE_list("train_models", ["ssd_tiny"],
                                  "Models whose train step is timed (empty: none).")
_TRAIN_STEPS = flags.DEFINE_integer("train_steps", 10, "Timed train steps per model.")
_REPEATS = flags.DEFINE_integer("repeats", 1, "Timings of each pipeline case, interleaved.")
_AUGMENT_REVS = flags.DEFINE_list(
    "augment_revs", [], "Git revisions of ssd_jax/data/augment.py to compare (empty: this "
    "checkout's only).")
_OUT = flags.DEFINE_string("out", "benchmarks/results/bench_pipeline.json", "JSON output.")

# VOC's photos are 500 px on their long side, most 333-375 px on the other; decoding cost grows
# with the compressed size, and quality 95 brings these nearer VOC's (~100 KiB) than 85 does.
_VOC_SCENES = cluttered_voc.SceneConfig(side_range=(375, 500))
_VOC_QUALITY = 95


def write_voc_style_dataset(root: str, num_images: int, seed: int = 0) -> float:
  """Writes ``num_images`` 'trainval' images of ``_VOC_SCENES`` as one VOC folder ``root``.

  Returns:
    The mean JPEG size in KiB.
  """
  cluttered_voc.write_voc_folder(root, num_trainval=num_images, num_test=0, seed=seed,
                                 config=_VOC_SCENES, quality=_VOC_QUALITY)
  images = os.path.join(root, "JPEGImages")
  return float(np.mean([os.path.getsize(os.path.join(images, f))
                        for f in os.listdir(images)])) / 1024


def time_pipeline(source, image_size: int, max_boxes: int, batch: int, batches: int,
                  warmup: int) -> dict:
  """Examples/s of ``train_iterator`` with the Caffe augmentation, after ``warmup`` batches."""
  iterator = pipeline.train_iterator(source, image_size=image_size, batch_size=batch,
                                     max_boxes=max_boxes, seed=0,
                                     augment=augment.AugmentConfig(), process_index=0,
                                     process_count=1)
  start = time.perf_counter()
  next(iterator)
  first_batch_s = time.perf_counter() - start
  for _ in range(warmup - 1):
    next(iterator)
  start, cpu_start = time.perf_counter(), time.process_time()
  for _ in range(batches):
    next(iterator)
  seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
  iterator.close()
  return {"image_size": image_size, "batch": batch, "batches": batches,
          "first_batch_s": first_batch_s, "examples_per_s": batches * batch / seconds,
          "examples_per_cpu_s": batches * batch / cpu_seconds,
          "ms_per_batch": seconds / batches * 1e3}


def augment_at(rev: str) -> Callable:
  """``train_preprocess`` of ``ssd_jax/data/augment.py`` at git revision ``rev``; for one that
  still distorts in the pipeline, with neutral photometric values added."""
  source = subprocess.run(["git", "show", f"{rev}:ssd_jax/data/augment.py"], cwd=_ROOT,
                          check=True, capture_output=True, text=True).stdout
  spec = importlib.util.spec_from_loader(f"augment_at_{rev}", loader=None)
  module = importlib.util.module_from_spec(spec)
  exec(compile(source, f"{rev}:ssd_jax/data/augment.py", "exec"), module.__dict__)  # pylint: disable=exec-used
  if hasattr(module, "photometric_params"):
    return module.train_preprocess

  def with_neutral_photometric(example, seed, image_size, config):
    out = module.train_preprocess(example, seed, image_size, config)
    size = tf.shape(out["image"], out_type=tf.int32)
    return {**out, "photometric": tf.constant(photometric.NEUTRAL, tf.float32),
            "footprint": tf.stack([0, 0, size[1], size[0]])}

  return with_neutral_photometric


def _synthetic_source(image_size: int):
  """The synthetic config's training source at ``image_size`` px, and its ``max_boxes``."""
  config = synthetic_config.get_config()
  config.data.synthetic.image_size = image_size
  return registry.make_source(config.data, "train"), config.data.max_boxes


def pipeline_case(name: str, tmp: str) -> tuple[Any, int, int, dict]:
  """One of ``_CASES``: its source, output size, ``max_boxes`` and description; ``tmp`` is an
  empty directory for its files."""
  if name == "voc":
    mean_kib = write_voc_style_dataset(tmp, _IMAGES.value)
    classes = _VOC_SCENES.class_shapes
    records = voc_directory(tmp, split="trainval", years=(), class_names=classes).records
    source = sources.RecordSource([records[i % len(records)] for i in range(_VOC_EPOCH.value)],
                                  classes)
    description = f"{_IMAGES.value} JPEGs 375-500 px, mean {mean_kib:.0f} KiB"
    return (source, 300, ssd300_voc0712.get_config().data.max_boxes,
            {"case": name, "epoch": _VOC_EPOCH.value, "source": description})
  size = {"synthetic300": 300, "synthetic128": 128}[name]
  source, max_boxes = _synthetic_source(size)
  return source, size, max_boxes, {"case": name, "source": f"synthetic shapes {size}x{size}"}


def time_cases(names: list[str], tmp: str, repeats: int,
               revs: Optional[list[str]] = None) -> list[dict]:
  """Each case (with each of ``revs``' ``train_preprocess``, if given) timed ``repeats`` times,
  interleaved (the machine's drift hits all alike): the median and range of its examples/s, also
  per core, and with ``revs`` the ratio to the first revision's, per repeat."""
  cases = [pipeline_case(name, os.path.join(tmp, name)) for name in names]
  variants = [(rev, augment_at(rev)) for rev in revs] if revs else [(None, None)]
  functions = dict(variants)
  own = pipeline.augment_lib.train_preprocess

  def measure(case_and_rev):
    c, rev = case_and_rev
    source, size, max_boxes, _ = cases[c]
    pipeline.augment_lib.train_preprocess = functions[rev] or own
    return time_pipeline(source, size, max_boxes, _BATCH.value, _BATCHES.value, _WARMUP.value)

  try:
    runs = common.interleave([[(c, rev) for rev, _ in variants] for c in range(len(cases))],
                             repeats, measure)
  finally:
    pipeline.augment_lib.train_preprocess = own
  results = []
  for c, (_, _, _, description) in enumerate(cases):
    for rev, _ in variants:
      case_runs = runs[c, rev]
      median, spread = common.median_range([r["examples_per_s"] for r in case_runs])
      row = {**description, **case_runs[0], "examples_per_s": median,
             "examples_per_s_range": spread,
             "examples_per_s_per_core": median / os.cpu_count(),
             "examples_per_cpu_s": common.median_range(
                 [r["examples_per_cpu_s"] for r in case_runs])[0],
             "ms_per_batch": common.median_range([r["ms_per_batch"] for r in case_runs])[0],
             "repeats": case_runs}
      if rev is not None:
        first = runs[c, variants[0][0]]
        row["augment_rev"] = rev
        for key in ("examples_per_s", "examples_per_cpu_s"):
          ratio, ratio_range = common.median_range(
              [r[key] / f[key] for r, f in zip(case_runs, first)])
          row[f"{key}_ratio_to_first"] = {"median": ratio, "range": ratio_range}
      results.append(row)
  return results


def train_step_results(names: list[str], tmp: str) -> tuple[list[dict], str]:
  """``bench_train --measure=step`` for ``names`` (each model in its own process), and the JAX
  backend it ran on. This process never initializes JAX before, so that on an accelerator the
  subprocess gets all of its memory."""
  out = os.path.join(tmp, "bench_train.json")
  cmd = [sys.executable, "-m", "benchmarks.bench_train", f"--models={','.join(names)}",
         "--measure=step", f"--steps={_TRAIN_STEPS.value}", f"--out={out}"]
  subprocess.run(cmd, check=True, cwd=_ROOT, stdout=subprocess.DEVNULL)
  with open(out) as f:
    payload = json.load(f)
  return payload["results"], payload["machine"]["backend"]


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  unknown = [c for c in _CASE_LIST.value if c not in _CASES]
  unknown += [m for m in _TRAIN_MODELS.value if m not in models.MODEL_NAMES]
  if unknown:
    raise app.UsageError(f"unknown --cases / --train_models {unknown}; valid: {_CASES}, "
                         f"{models.MODEL_NAMES}")
  if min(_BATCH.value, _BATCHES.value, _IMAGES.value, _VOC_EPOCH.value, _TRAIN_STEPS.value,
         _REPEATS.value) < 1:
    raise app.UsageError("--batch, --batches, --images, --voc_epoch, --train_steps and --repeats "
                         "must be >= 1")
  with tempfile.TemporaryDirectory() as tmp:
    cases = time_cases(_CASE_LIST.value, tmp, _REPEATS.value, _AUGMENT_REVS.value)
    rss = common.peak_rss_mib()
    steps, backend = (train_step_results(_TRAIN_MODELS.value, tmp) if _TRAIN_MODELS.value
                      else ([], None))
  for step in steps:
    step["input_bound_on"] = [c["case"] for c in cases if c["image_size"] == step["image_size"]
                              and c["examples_per_s"] < step["step_images_per_s"]]

  print(f"Caffe augmentation, {os.cpu_count()} cores, median [range] of {_REPEATS.value} "
        "repeats")
  print(f"{'pipeline case':14s} {'source':38s} {'out px':>6s} {'batch':>5s} "
        f"{'examples/s [range]':>22s} {'per core':>8s} {'per CPU-s':>9s} {'ms/batch':>9s} "
        f"{'1st batch s':>11s}" + ("  augment rev: x first rev [range], per CPU-s"
                                    if _AUGMENT_REVS.value else ""))
  for c in cases:
    low, high = c["examples_per_s_range"]
    rate = f"{c['examples_per_s']:.1f} [{low:.0f}-{high:.0f}]"
    line = (f"{c['case']:14s} {c['source']:38s} {c['image_size']:6d} {c['batch']:5d} "
            f"{rate:>22s} {c['examples_per_s_per_core']:8.1f} {c['examples_per_cpu_s']:9.1f} "
            f"{c['ms_per_batch']:9.1f} {c['first_batch_s']:11.2f}")
    if "augment_rev" in c:
      wall, cpu = c["examples_per_s_ratio_to_first"], c["examples_per_cpu_s_ratio_to_first"]
      line += (f"  {c['augment_rev']}: {wall['median']:.2f} [{wall['range'][0]:.2f}-"
               f"{wall['range'][1]:.2f}], {cpu['median']:.2f}")
    print(line)
  if steps:
    print(f"\n{'train step':14s} {'backend':>8s} {'px':>4s} {'batch':>5s} {'images/s':>10s}  "
          "input-bound on")
    for s in steps:
      print(f"{s['model']:14s} {backend:>8s} {s['image_size']:4d} "
            f"{s['batch']:5d} {s['step_images_per_s']:10.1f}  "
            f"{', '.join(s['input_bound_on']) or '-'}")
  common.write_json(_OUT.value, {"benchmark": "bench_pipeline", "augment": "caffe (default)",
                                 "augment_revs": _AUGMENT_REVS.value,
                                 "pipeline": cases, "pipeline_peak_rss_mib": rss,
                                 "train_step": steps})


if __name__ == "__main__":
  app.run(main)
