"""Our SSD300 vs torchvision's ``ssd300_vgg16`` on the same CPU, in one run.

  pip install torch==2.14.1 torchvision==0.29.1   # optional extra, only for this script
  python -m benchmarks.compare_torchvision [--batch 8] [--iters 3] [--repeats 3] [--threads 2]
      [--conv_impl auto[,xla,cpu_fast,winograd6]] [--functions train ...] [--notorchvision]
      [--dtype float32|bfloat16] [--freeze] [--torch_site /path/to/site-packages]
      [--out benchmarks/results/compare_torchvision.json]

``--torch_site`` appends a site-packages directory holding torch and torchvision (e.g. of a
separate venv) to ``sys.path``, so they stay out of the project's environment.

Both models have the same layers (VGG16-reduced, 6 sources, 8732 priors, 21 logits), random
weights (torchvision: ``weights=None, weights_backbone=None``) and 300x300 inputs. Measured:
  forward  backbone + heads on a normalized batch (torchvision ``model.head`` of the
           ``model.backbone`` features under ``no_grad``; ours ``model.apply``, jitted);
  train    a full step: matching, loss, backward, SGD-momentum update (torchvision in train mode
           computes its own matching and loss from targets; ours ``encode_targets`` +
           ``multibox_loss``);
  detect   inference with post-processing (torchvision ``eval()`` call; ours forward +
           ``postprocess.decode_detections``).
The comparison runs ``--repeats`` times, interleaved (per function: each contestant in turn, the
first of the order moving by one every repeat, so that the machine's drift hits all alike),
``--iters`` timed calls each after a first one; reported: the median and range over the repeats
of each contestant's images/s (each repeat's median call) and of its per-repeat ratio to the
baseline (torchvision; with ``--notorchvision`` the first ``--conv_impl``).
Each contestant runs in a worker process of its own (spawned, long-lived, called in turn by this
one), so that no one's allocator state, thread pools or caches reach another's timings: in
one process, our train step right after torchvision's took up to 1.4x as long, with ~3 s more
kernel time (page faults), for at least two steps (``common.time_fn``'s untimed first call
absorbed most of it; benchmarks/RESULTS.md compares the two layouts).
Several ``--conv_impl`` values (``auto,cpu_fast,winograd6``) are contestants of their own
(``ours_auto``, ...; one alone is ``ours``): the A/B that decides what ``auto`` picks on a CPU
kind, each variant compiled once, against torchvision in the same run or, with
``--notorchvision`` (no torch needed), against the first. ``--functions`` restricts the
comparison to some of the three (the others are not compiled).
``--dtype bfloat16``: ours with ``model.dtype=bfloat16`` (bf16 activations and matmuls, float32
params and loss), torchvision's calls under ``torch.autocast("cpu", dtype=torch.bfloat16)``: what
each offers for CPUs with AMX or AVX512-BF16.
``--freeze``: both train steps with VGG16's first two blocks frozen (conv1_1 .. conv2_2), as the
paper configs train them (``config.freeze_layers``, Caffe's recipe): ours through
``train_step.stop_frozen_gradients`` and ``train_step.freeze``, torchvision's by
``requires_grad_(False)`` on ``backbone.features[:10]``, so that autograd skips them too.
``--threads N`` pins the process to N cores (``os.sched_setaffinity``, before JAX starts, so
XLA's thread pool sees N cores) and sets ``torch.set_num_threads(N)``; default: all cores.
"""

import importlib.util
import multiprocessing
import os
import sys
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

_NUM_CLASSES = 20  # VOC; torchvision counts the background too (21)
_FUNCTIONS = ("forward", "train", "detect")
_MEASURE = flags.DEFINE_multi_enum("functions", list(_FUNCTIONS), _FUNCTIONS,
                                   "Functions to compare (repeat the flag for several).")
_INSTALL_HINT = ("benchmarks/compare_torchvision.py needs the optional torch and torchvision: "
                 "pip install torch==2.14.1 torchvision==0.29.1")


def _random_targets(rng, batch):
  """Per image 1..8 boxes, normalized xyxy, and labels 1..20 (padded to 8 with label 0)."""
  xy = rng.uniform(0, 0.7, (batch, 8, 2))
  boxes = np.concatenate([xy, xy + rng.uniform(0.05, 0.3, (batch, 8, 2))], -1).clip(0, 1)
  counts = rng.integers(1, 9, batch)
  labels = np.where(np.arange(8)[None] < counts[:, None],
                    rng.integers(1, _NUM_CLASSES + 1, (batch, 8)), 0)
  return boxes.astype(np.float32), labels.astype(np.int32), counts


def torchvision_functions(images, boxes, labels, counts, dtype: str, freeze: bool) -> dict:
  """torchvision's ``_FUNCTIONS`` on the batch, as callables that return when done."""
  import torch  # pylint: disable=g-import-not-at-top
  import torchvision  # pylint: disable=g-import-not-at-top
  model = torchvision.models.detection.ssd300_vgg16(weights=None, weights_backbone=None,
                                                    num_classes=_NUM_CLASSES + 1)
  x = torch.from_numpy(images.transpose(0, 3, 1, 2) / 255.0).float()
  image_list = list(x)
  targets = [{"boxes": torch.from_numpy(boxes[i, :n] * 300.0),
              "labels": torch.from_numpy(labels[i, :n].astype(np.int64))}
             for i, n in enumerate(counts)]
  if freeze:  # conv1_1, ReLU, conv1_2, ReLU, pool, conv2_1, ReLU, conv2_2, ReLU, pool
    model.backbone.features[:10].requires_grad_(False)
  optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3,
                              momentum=0.9)
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


def our_functions(images, boxes, labels, dtype: str, conv_impl: str, freeze: bool) -> dict:
  """Our ``_FUNCTIONS`` on the batch, jitted, as callables that block until done."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top

  # pylint: disable-next=g-import-not-at-top
  from ssd_jax import losses, matching, models, postprocess, priors, train_step

  model = models.create_model("ssd300_vgg16", _NUM_CLASSES, dtype=jnp.dtype(dtype),
                              conv_impl=conv_impl)
  prior_boxes = jnp.asarray(priors.generate(model.prior_spec))
  images, boxes, labels = (jax.device_put(a) for a in (images, boxes, labels))
  params = jax.jit(model.init)(jax.random.key(0), images[:1])["params"]
  from experiments.configs import common as configs  # pylint: disable=g-import-not-at-top
  layers = configs.VGG16_FROZEN_LAYERS if freeze else ()
  frozen = train_step.frozen_mask(params, layers)
  tx = train_step.freeze(optax.sgd(1e-3, momentum=0.9), layers)
  opt_state = tx.init(params)

  @jax.jit
  def forward(params, images):
    return model.apply({"params": params}, images)

  @jax.jit
  def train(params, opt_state, images, boxes, labels):
    loc_t, cls_t = jax.vmap(
        lambda b, l: matching.encode_targets(b, l, prior_boxes))(boxes, labels)

    def loss_fn(p):
      p = train_step.stop_frozen_gradients(p, frozen)
      return losses.multibox_loss(*model.apply({"params": p}, images, train=True), loc_t,
                                  cls_t)[0]

    grads = jax.grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  @jax.jit
  def detect(params, images):
    return postprocess.decode_detections(*model.apply({"params": params}, images), prior_boxes)

  return {
      "forward": lambda: jax.block_until_ready(forward(params, images)),
      "detect": lambda: jax.block_until_ready(detect(params, images)),
      "train": lambda: jax.block_until_ready(train(params, opt_state, images, boxes, labels)),
  }


def _batch(batch: int) -> tuple:
  """The benchmark's inputs, the same in every process: images [B, 300, 300, 3] in 0..255,
  boxes, labels and counts of ``_random_targets``."""
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (batch, 300, 300, 3)).astype(np.float32)
  return (images, *_random_targets(rng, batch))


def _worker(conv_impl: Optional[str], settings: dict, conn) -> None:
  """Serves torchvision's ``_FUNCTIONS`` (``conv_impl`` None) or ours with ``conv_impl`` in a
  process of its own: sends its version once set up, then answers each ``(name, iters)`` request
  with ``common.time_fn``'s timings, and None with its peak RSS in MiB. The process inherits the
  parent's CPU affinity (``--threads``)."""
  images, boxes, labels, counts = _batch(settings["batch"])
  if conv_impl is None:
    sys.path.extend([settings["torch_site"]] if settings["torch_site"] else [])
    import torch  # pylint: disable=g-import-not-at-top
    import torchvision  # pylint: disable=g-import-not-at-top
    torch.set_num_threads(settings["threads"])
    functions = torchvision_functions(images, boxes, labels, counts, settings["dtype"],
                                      settings["freeze"])
    conn.send({"torch": torch.__version__, "torchvision": torchvision.__version__})
  else:
    functions = our_functions(images, boxes, labels, settings["dtype"], conv_impl,
                              settings["freeze"])
    conn.send({})
  for name, iters in iter(conn.recv, None):
    conn.send(common.time_fn(functions[name], iters))
  conn.send(common.peak_rss_mib())


def compare(timers: dict[str, Callable[[str, int], dict]], batch: int, iters: int,
            repeats: int, functions: Sequence[str] = _FUNCTIONS) -> dict:
  """Interleaved timings, ``timers[contestant](name, iters)`` giving ``common.time_fn``'s; the
  first contestant is the baseline. Per function name and contestant: the median and range of
  images/s over the repeats (``C_images_per_s``; each repeat's in ``C_images_per_s_repeats``) and
  the first call's seconds; per contestant but the baseline, those of its per-repeat ratio to the
  baseline (``C_ratio``, ``C_ratios``)."""
  names = list(timers)
  rates = {(c, n): [] for c in names for n in functions}
  first_call_s = {}
  for repeat in range(repeats):
    for name in functions:
      for contestant in common.rotation(names, repeat):
        timing = timers[contestant](name, iters)
        first_call_s.setdefault((contestant, name), timing["first_call_s"])
        rates[contestant, name].append(batch / timing["median_s"])
  results = {}
  for name in functions:
    row = results[name] = {}
    for contestant in names:
      row[f"{contestant}_images_per_s"] = common.spread(rates[contestant, name])
      row[f"{contestant}_images_per_s_repeats"] = rates[contestant, name]
      row[f"{contestant}_first_call_s"] = first_call_s[contestant, name]
    for contestant in names[1:]:
      ratios = [c / b for c, b in zip(rates[contestant, name], rates[names[0], name])]
      row[f"{contestant}_ratios"] = ratios
      row[f"{contestant}_ratio"] = common.spread(ratios)
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
  settings = {"batch": batch, "threads": threads, "dtype": _DTYPE.value, "freeze": _FREEZE.value,
              "torch_site": _TORCH_SITE.value}
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
  print(f"batch {batch}, 300x300, {threads} threads, {_DTYPE.value}"
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
