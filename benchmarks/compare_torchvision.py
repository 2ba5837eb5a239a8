"""Our SSD300 vs torchvision's ``ssd300_vgg16`` on the same CPU, in one run.

  pip install torch==2.14.1 torchvision==0.29.1   # optional extra, only for this script
  python -m benchmarks.compare_torchvision [--batch 8] [--iters 3] [--repeats 3] [--threads 2]
      [--conv_impl auto[,xla,cpu_fast,winograd6]] [--functions train ...] [--notorchvision]
      [--dtype float32|bfloat16] [--freeze] [--torch_site /path/to/site-packages]
      [--out benchmarks/results/compare_torchvision.json]

``--torch_site`` appends a site-packages directory holding torch and torchvision (e.g. of a
separate venv) to ``sys.path``, so they stay out of the project's environment.

Both models have the same layers (VGG16-reduced, 6 sources, 8732 priors, as many classes),
random weights (torchvision: ``weights=None, weights_backbone=None``) and the same batch:
``parts.first_batch`` of our SSD300 config (``parts.config``: the paper's recipe, SGD with
momentum 0.9 and weight decay 5e-4, on the synthetic shapes at 300 px). Measured:
  forward  backbone + heads on the batch (torchvision ``model.head`` of the ``model.backbone``
           features under ``no_grad``; ours ``model.apply``);
  train    a full step: torchvision in train mode (its transform, matching and loss from the
           targets, backward, ``torch.optim.SGD``); ours the train step that training runs
           (``experiment.create_training``: photometric distortion of the batch, matching
           targets, multibox loss, gradient, weight decay and SGD update, the finite-loss guard);
  detect   inference with post-processing (torchvision ``eval()`` call; ours
           ``experiment.create_predict_fn``: forward, decoding, per-class NMS).
The comparison runs ``--repeats`` times, interleaved (per function: each contestant in turn, the
first of the order moving by one every repeat, so that the machine's drift hits all alike),
``--iters`` timed calls each after a first one; reported: the median and range over the repeats
of each contestant's images/s (each repeat's median call) and of its per-repeat ratio to the
baseline (torchvision; with ``--notorchvision`` the first ``--conv_impl``).
Each contestant runs in a worker process of its own (spawned, long-lived, called in turn by this
one), so that no one's allocator state, thread pools or caches reach another's timings: in
one process, our train step right after torchvision's took up to 1.4x as long, with ~3 s more
kernel time (page faults), for at least two steps (``common.time_fn``'s untimed first call
absorbed most of it; benchmarks/HISTORY.md compares the two layouts).
Several ``--conv_impl`` values (``auto,cpu_fast,winograd6``) are contestants of their own
(``ours_auto``, ...; one alone is ``ours``): the A/B that decides what ``auto`` picks on a CPU
kind, each variant compiled once, against torchvision in the same run or, with
``--notorchvision`` (no torch needed), against the first. ``--functions`` restricts the
comparison to some of the three (the others are not compiled).
``--dtype bfloat16``: ours with ``model.dtype=bfloat16`` (bf16 activations and matmuls, float32
params and loss), torchvision's calls under ``torch.autocast("cpu", dtype=torch.bfloat16)``: what
each offers for CPUs with AMX or AVX512-BF16.
``--freeze``: both train steps with VGG16's first two blocks frozen (conv1_1 .. conv2_2), as the
paper configs train them (``config.freeze_layers``, Caffe's recipe; ours ``init_from`` a one-step
run, ``parts.with_weights``), torchvision's by ``requires_grad_(False)`` on
``backbone.features[:10]``, so that autograd skips them too.
``--threads N`` pins the process to N cores (``os.sched_setaffinity``, before JAX starts, so
XLA's thread pool sees N cores) and sets ``torch.set_num_threads(N)``; default: all cores.
"""

import importlib.util
import multiprocessing
import os
import sys
import tempfile
from typing import Callable, Optional, Sequence

from absl import app, flags
import numpy as np

from benchmarks import common

_BATCH = flags.DEFINE_integer("batch", 8, "Images per batch.")
_ITERS = flags.DEFINE_integer("iters", 3, "Timed calls per function and repeat.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Interleaved repeats of the whole comparison.")
_THREADS = flags.DEFINE_integer("threads", None, "CPU threads for both frameworks.")
# ssd_jax.models.CONV_IMPLS, which tests/test_compare_torchvision.py checks: the parent process
# only schedules the workers and does not import JAX.
_CONV_IMPLS = ("xla", "cpu_fast", "winograd6", "auto")
_CONV_IMPL = flags.DEFINE_list("conv_impl", ["auto"], "Our convolution implementations "
                               f"(ssd_jax.models.conv), each a contestant: {_CONV_IMPLS}.")
_TORCHVISION = flags.DEFINE_bool("torchvision", True, "Time torchvision, the baseline of the "
                                 "ratios (else the first --conv_impl is).")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"],
                           "Computation dtype of both (torchvision: autocast).")
_FREEZE = flags.DEFINE_bool("freeze", False, "Train steps with conv1_1 .. conv2_2 frozen.")
_TORCH_SITE = flags.DEFINE_string("torch_site", None, "Extra site-packages holding torch.")
_OUT = flags.DEFINE_string("out", "benchmarks/results/compare_torchvision.json", "JSON output.")

_FUNCTIONS = ("forward", "train", "detect")
_MEASURE = flags.DEFINE_multi_enum("functions", list(_FUNCTIONS), _FUNCTIONS,
                                   "Functions to compare (repeat the flag for several).")
_INSTALL_HINT = ("benchmarks/compare_torchvision.py needs the optional torch and torchvision: "
                 "pip install torch==2.14.1 torchvision==0.29.1")
_MODEL = "ssd300_vgg16"


def torchvision_functions(batch: dict[str, np.ndarray], num_classes: int, dtype: str,
                          freeze: bool) -> dict:
  """torchvision's ``_FUNCTIONS`` on ``batch`` (``parts.first_batch``'s: uint8 images, padded
  normalized boxes and labels), as callables that return when done. ``num_classes`` counts the
  background, as torchvision does."""
  import torch  # pylint: disable=g-import-not-at-top
  import torchvision  # pylint: disable=g-import-not-at-top
  model = torchvision.models.detection.ssd300_vgg16(weights=None, weights_backbone=None,
                                                    num_classes=num_classes)
  images = batch["image"]
  x = torch.from_numpy(images.transpose(0, 3, 1, 2) / 255.0).float()
  image_list = list(x)
  side = images.shape[1]
  real = batch["labels"] > 0  # the padding rows are not objects
  targets = [{"boxes": torch.from_numpy(batch["boxes"][i][real[i]] * side),
              "labels": torch.from_numpy(batch["labels"][i][real[i]].astype(np.int64))}
             for i in range(len(images))]
  if freeze:  # conv1_1, ReLU, conv1_2, ReLU, pool, conv2_1, ReLU, conv2_2, ReLU, pool
    model.backbone.features[:10].requires_grad_(False)
  optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3,
                              momentum=0.9, weight_decay=5e-4)
  normalized = model.transform(image_list)[0].tensors
  bf16 = dtype == "bfloat16"
  autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)

  def forward():
    model.eval()
    with torch.no_grad(), autocast():
      model.head(list(model.backbone(normalized).values()))

  def train():
    model.train()
    with autocast():
      loss = sum(model(image_list, targets).values())
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

  def detect():
    model.eval()
    with torch.no_grad(), autocast():
      model(image_list)

  return {"forward": forward, "train": train, "detect": detect}


def _worker(conv_impl: Optional[str], settings: dict, conn) -> None:
  """Serves torchvision's ``_FUNCTIONS`` (``conv_impl`` None) or ours with ``conv_impl`` in a
  process of its own: sends its version once set up, then answers each ``(name, iters)`` request
  with ``common.time_fn``'s timings, and None with its peak RSS in MiB. The process inherits the
  parent's CPU affinity (``--threads``)."""
  batch = settings["batch_arrays"]
  if conv_impl is None:
    sys.path.extend([settings["torch_site"]] if settings["torch_site"] else [])
    import torch  # pylint: disable=g-import-not-at-top
    import torchvision  # pylint: disable=g-import-not-at-top
    torch.set_num_threads(settings["threads"])
    functions = torchvision_functions(batch, settings["num_classes"] + 1, settings["dtype"],
                                      settings["freeze"])
    conn.send({"torch": torch.__version__, "torchvision": torchvision.__version__})
  else:
    from benchmarks import parts  # pylint: disable=g-import-not-at-top
    with tempfile.TemporaryDirectory() as tmp:
      cfg = parts.with_weights(parts.config(_MODEL, settings["batch"], settings["dtype"],
                                            conv_impl, settings["freeze"]), tmp)
      functions = parts.compiled(cfg, batch, settings["functions"]).calls
    conn.send({})
  for name, iters in iter(conn.recv, None):
    conn.send(common.time_fn(functions[name], iters))
  conn.send(common.peak_rss_mib())


def compare(timers: dict[str, Callable[[str, int], dict]], batch: int, iters: int,
            repeats: int, functions: Sequence[str] = _FUNCTIONS) -> dict:
  """Interleaved timings, ``timers[contestant](name, iters)`` giving ``common.time_fn``'s; the
  first contestant is the baseline. Per function name, ``common.contest`` of the contestants'
  images/s (``C_images_per_s``, ``C_images_per_s_repeats``, ``C_ratio``, ``C_ratios``) and each
  one's first call seconds (``C_first_call_s``, compilation included)."""
  names = list(timers)
  timings = common.interleave([[(name, c) for c in names] for name in functions], repeats,
                              lambda key: timers[key[1]](key[0], iters))
  results = {}
  for name in functions:
    row = common.contest({c: [batch / t["median_s"] for t in timings[name, c]] for c in names})
    results[name] = {}
    for c in names:
      results[name][f"{c}_images_per_s"] = row[c]
      results[name][f"{c}_images_per_s_repeats"] = row[f"{c}_repeats"]
      results[name][f"{c}_first_call_s"] = timings[name, c][0]["first_call_s"]
    for c in names[1:]:
      results[name][f"{c}_ratio"], results[name][f"{c}_ratios"] = (row[f"{c}_ratio"],
                                                                  row[f"{c}_ratios"])
  return results


def contestants(conv_impls: Sequence[str], torchvision: bool) -> dict[str, Optional[str]]:
  """Contestant name -> its ``conv_impl`` (None: torchvision), the baseline first."""
  ours = ({"ours": conv_impls[0]} if len(conv_impls) == 1
          else {f"ours_{impl}": impl for impl in conv_impls})
  return {"torchvision": None, **ours} if torchvision else ours


def main(_):
  if _TORCHVISION.value:
    if _TORCH_SITE.value:
      sys.path.append(_TORCH_SITE.value)
    if not all(importlib.util.find_spec(m) for m in ("torch", "torchvision")):
      sys.exit(_INSTALL_HINT)
  threads = _THREADS.value or len(os.sched_getaffinity(0))
  batch = _BATCH.value
  functions = [f for f in _FUNCTIONS if f in _MEASURE.value]
  # Imported only now, after _pin_threads: JAX and TensorFlow size their thread pools once.
  from benchmarks import parts  # pylint: disable=g-import-not-at-top
  from ssd_jax import experiment  # pylint: disable=g-import-not-at-top
  cfg = parts.config(_MODEL, batch, _DTYPE.value)
  settings = {"batch": batch, "threads": threads, "dtype": _DTYPE.value, "freeze": _FREEZE.value,
              "torch_site": _TORCH_SITE.value, "functions": functions,
              "batch_arrays": parts.first_batch(cfg),
              "num_classes": experiment.create_data(cfg).label_map.num_classes}
  context = multiprocessing.get_context("spawn")  # a fresh interpreter, no state of this one
  connections, workers, versions = {}, [], {}
  for contestant, conv_impl in contestants(_CONV_IMPL.value, _TORCHVISION.value).items():
    connections[contestant], child = context.Pipe()
    workers.append(context.Process(target=_worker, args=(conv_impl, settings, child)))
    workers[-1].start()
  for connection in connections.values():
    versions.update(connection.recv())

  def timer(contestant):
    def time_call(name, iters):
      connections[contestant].send((name, iters))
      return connections[contestant].recv()
    return time_call

  results = compare({c: timer(c) for c in connections}, batch, _ITERS.value, _REPEATS.value,
                    functions)
  peak_rss_mib = {}
  for (contestant, connection), worker in zip(connections.items(), workers):
    connection.send(None)
    peak_rss_mib[contestant] = connection.recv()
    worker.join()

  baseline = next(iter(connections))
  print(f"{common.machine()['cpu']}: batch {batch}, 300x300, {threads} threads, {_DTYPE.value}"
        f"{', conv1_1 .. conv2_2 frozen' if _FREEZE.value else ''}; images/s, median [range] of "
        f"{_REPEATS.value} interleaved repeats (first call s), ratio to {baseline}")
  cell = lambda v: common.format_spread(v["median"], v["range"])
  for name, r in results.items():
    for contestant in connections:
      ratio = r.get(f"{contestant}_ratio")
      print(f"{name:8s} {contestant:16s} {cell(r[f'{contestant}_images_per_s']):>18s} "
            f"({r[f'{contestant}_first_call_s']:5.1f}) {cell(ratio) if ratio else '':>20s}")
  common.write_json(_OUT.value, {
      "benchmark": "compare_torchvision", "batch": batch, "threads": threads,
      "conv_impl": _CONV_IMPL.value, "dtype": _DTYPE.value, "freeze": _FREEZE.value,
      "iters": _ITERS.value, "repeats": _REPEATS.value, "baseline": baseline,
      **versions, "results": results, "peak_rss_mib": peak_rss_mib})


if __name__ == "__main__":
  flags.register_validator("threads", lambda n: n is None or n >= 1, "--threads must be >= 1")
  flags.register_validator("repeats", lambda n: n >= 1, "--repeats must be >= 1")
  flags.register_validator("iters", lambda n: n >= 1, "--iters must be >= 1")
  flags.register_validator(
      "conv_impl", lambda impls: bool(impls) and set(impls) <= set(_CONV_IMPLS)
      and len(set(impls)) == len(impls), f"--conv_impl must be distinct values of {_CONV_IMPLS}")

  def _pin_threads(argv):
    """Applies --threads before JAX is imported (XLA sizes its thread pool at start-up)."""
    rest = flags.FLAGS(argv)
    if _THREADS.value:
      os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:_THREADS.value])
    return rest

  app.run(main, flags_parser=_pin_threads)
