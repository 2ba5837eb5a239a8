"""Speed of the SSD300 VGG16 convolutions per implementation (forward, forward + backward).

For every distinct VGG16-reduced layer shape of SSD300 (batch 8, 300x300 input) this times
``ssd_jax.models.conv.conv2d`` with each ``impl``, and optionally torch's ``F.conv2d`` (oneDNN)
for comparison, interleaving the implementations within each of ``--reps`` repetitions (the
order rotated every repetition), each timed call right after an untimed one. Reported: the
median and range over the repetitions of each time and of each implementation's speed-up over
the first of ``--impls`` in the same repetition (the machines are shared and noisy: compare
ratios rather than absolute numbers). The backbone line weights each layer by how often it
occurs in VGG16 and leaves out conv1_1's input gradient (the image needs none), as in a train
step.

Usage (from the repository root):
  GLIBC_TUNABLES=glibc.malloc.hugetlb=1 .venv/bin/python benchmarks/bench_conv.py \
      [--batch 8] [--reps 3] [--layers conv3_2,fc6] [--impls xla,cpu_fast,winograd6] \
      [--torch_site /tmp/torchvenv/lib/python3.11/site-packages]

``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` lets glibc back XLA's large buffers with transparent
huge pages; without it, first-touch page faults on the freshly allocated buffers of every call
dominate memory-bound ops on these VMs (2-4x slower elementwise work, for every impl).
``--torch_site`` appends a site-packages directory holding torch (kept out of the project venv)
to ``sys.path``. Results go to ``benchmarks/results/bench_conv.json``, with the CPU model and its
vector extensions.
"""

import argparse
import functools
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
# pylint: disable=g-import-not-at-top
from benchmarks import common
from ssd_jax.models.conv import IMPLS, conv2d
# pylint: enable=g-import-not-at-top

_KINDS = ('fwd', 'fwd_bwd')

# name, input side, Cin, Cout, kernel side, dilation, padding, occurrences, needs input gradient.
LAYERS = (
    ('conv1_1', 300, 3, 64, 3, 1, 1, 1, False),
    ('conv1_2', 300, 64, 64, 3, 1, 1, 1, True),
    ('conv2_1', 150, 64, 128, 3, 1, 1, 1, True),
    ('conv2_2', 150, 128, 128, 3, 1, 1, 1, True),
    ('conv3_1', 75, 128, 256, 3, 1, 1, 1, True),
    ('conv3_2', 75, 256, 256, 3, 1, 1, 2, True),
    ('conv4_1', 38, 256, 512, 3, 1, 1, 1, True),
    ('conv4_2', 38, 512, 512, 3, 1, 1, 2, True),
    ('conv5_1', 19, 512, 512, 3, 1, 1, 3, True),
    ('fc6', 19, 512, 1024, 3, 6, 6, 1, True),
    ('fc7', 19, 1024, 1024, 1, 1, 0, 1, True),
)


def jax_fns(impl, dilation, padding, needs_dx):
  """Jitted forward and forward + backward (output, [dx,] dkernel) for one impl."""
  def forward(x, kernel):
    return conv2d(x, kernel, padding=padding, dilation=dilation, impl=impl)

  def forward_backward(x, kernel, dy):
    if needs_dx:
      y, vjp = jax.vjp(forward, x, kernel)
      return (y, *vjp(dy))
    y, vjp = jax.vjp(lambda k: forward(x, k), kernel)
    return (y, *vjp(dy))

  fwd, fwd_bwd = jax.jit(forward), jax.jit(forward_backward)
  return (lambda a: jax.block_until_ready(fwd(a['x'], a['kernel'])),
          lambda a: jax.block_until_ready(fwd_bwd(a['x'], a['kernel'], a['dy'])))


def torch_fns(torch, dilation, padding, needs_dx):
  """Forward (no grad) and forward + backward with torch.nn.functional.conv2d (NCHW)."""
  def forward(a):
    with torch.no_grad():
      return torch.nn.functional.conv2d(a['x'], a['kernel'], padding=padding, dilation=dilation)

  def forward_backward(a):
    x = a['x'].detach().requires_grad_(needs_dx)
    kernel = a['kernel'].detach().requires_grad_(True)
    y = torch.nn.functional.conv2d(x, kernel, padding=padding, dilation=dilation)
    y.backward(a['dy'])
    return y

  return forward, forward_backward


def bench_layer(layer, batch, reps, jax_impls, torch) -> dict[str, dict[str, list[float]]]:
  """Milliseconds per call of each impl (and torch), ``{impl: {'fwd': [...], 'fwd_bwd': [...]}}``
  with one entry per timed repetition."""
  name, side, cin, cout, ksize, dilation, padding, _, needs_dx = layer
  rng = np.random.default_rng(0)
  x = rng.standard_normal((batch, side, side, cin), np.float32)
  kernel = (rng.standard_normal((ksize, ksize, cin, cout)) / np.sqrt(ksize * ksize * cin)
            ).astype(np.float32)
  dy = rng.standard_normal((batch, side, side, cout), np.float32)
  fns, args = {}, {}
  for impl in jax_impls:
    fns[impl] = jax_fns(impl, dilation, padding, needs_dx)
    args[impl] = {'x': jnp.asarray(x), 'kernel': jnp.asarray(kernel), 'dy': jnp.asarray(dy)}
  if torch is not None:
    fns['torch'] = torch_fns(torch, dilation, padding, needs_dx)
    args['torch'] = {'x': torch.from_numpy(x.transpose(0, 3, 1, 2).copy()),
                     'kernel': torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()),
                     'dy': torch.from_numpy(dy.transpose(0, 3, 1, 2).copy())}
  def measure(impl):
    # time_fn makes one untimed call first (in the first repetition, the one that compiles): a
    # call timed straight after another impl's paid for the memory that one had freed (up to 2x
    # as long after XLA's convolution backward; benchmarks/HISTORY.md).
    return [1e3 * common.time_fn(functools.partial(fn, args[impl]), 1)['median_s']
            for fn in fns[impl]]

  per_rep = common.interleave([list(fns)], reps, measure)
  return {impl: {kind: [ms[k] for ms in reps_ms] for k, kind in enumerate(_KINDS)}
          for impl, reps_ms in per_rep.items()}


def summarize(times: dict[str, dict[str, list[float]]], base: str, flops: dict[str, float]
              ) -> dict[str, dict]:
  """Per impl and kind ('fwd', 'fwd_bwd'): median ms (``KIND_ms``, with ``KIND_ms_range``),
  GFLOP/s at the median and the speed-up over ``base`` (``KIND_speedup``: median and range of
  the per-repetition ratio ``base ms / impl ms``)."""
  result = {}
  for impl, kinds in times.items():
    row = {}
    for kind, ms in kinds.items():
      row[f'{kind}_ms'], row[f'{kind}_ms_range'] = common.median_range(ms)
      row[f'{kind}_gflops'] = flops[kind] / row[f'{kind}_ms'] / 1e6
      row[f'{kind}_speedup'] = common.spread([b / t for b, t in zip(times[base][kind], ms)])
    result[impl] = row
  return result


def layer_flops(layer, batch) -> dict[str, float]:
  """Multiply-adds x 2 of the forward pass and of forward + backward (no dx for conv1_1)."""
  _, side, cin, cout, ksize, _, _, _, needs_dx = layer
  fwd = 2 * batch * side * side * cin * cout * ksize * ksize
  return {'fwd': fwd, 'fwd_bwd': fwd * (3 if needs_dx else 2)}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--batch', type=int, default=8)
  parser.add_argument('--reps', type=int, default=3)
  parser.add_argument('--layers', default='', help='comma-separated layer names (default: all)')
  parser.add_argument('--impls', default='xla,cpu_fast',
                      help=f'comma-separated conv2d impls, of {IMPLS}')
  parser.add_argument('--torch_site', default='', help='site-packages directory with torch')
  parser.add_argument('--out', default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                    'results', 'bench_conv.json'))
  args = parser.parse_args()
  if args.batch < 1 or args.reps < 1:
    parser.error('--batch and --reps must be >= 1')
  if args.torch_site:
    sys.path.append(args.torch_site)
  try:
    import torch  # pylint: disable=g-import-not-at-top
    torch.set_num_threads(os.cpu_count())
  except ImportError:
    torch = None
  names = [n for n in args.layers.split(',') if n]
  unknown = set(names) - {layer[0] for layer in LAYERS}
  if unknown:
    raise ValueError(f'unknown layers {sorted(unknown)}; known: {[l[0] for l in LAYERS]}')
  layers = [layer for layer in LAYERS if not names or layer[0] in names]

  jax_impls = tuple(i for i in args.impls.split(',') if i)
  if not jax_impls or set(jax_impls) - set(IMPLS):
    raise ValueError(f'--impls must name some of {IMPLS}, got {args.impls!r}')
  impls = jax_impls + (('torch',) if torch is not None else ())
  print(f'batch {args.batch}, median [range] of {args.reps} interleaved reps, jax '
        f'{jax.__version__} on {jax.default_backend()}, torch '
        f'{torch.__version__ if torch else "not found"}, '
        f'GLIBC_TUNABLES={os.environ.get("GLIBC_TUNABLES", "")!r}')
  print(f'{"layer":8s} {"impl":9s} {"fwd ms":>20s} {"GFLOP/s":>8s} {"fwd+bwd ms":>22s} '
        f'{"GFLOP/s":>8s}')
  base = jax_impls[0]
  cell = lambda median, low_high: common.format_spread(median, low_high, '.1f')
  speedup = lambda s: common.format_spread(s['median'], s['range'])
  raw, results = {}, {}
  for layer in layers:
    raw[layer[0]] = bench_layer(layer, args.batch, args.reps, jax_impls, torch)
    results[layer[0]] = summarize(raw[layer[0]], base, layer_flops(layer, args.batch))
    for impl, r in results[layer[0]].items():
      print(f'{layer[0]:8s} {impl:9s} {cell(r["fwd_ms"], r["fwd_ms_range"]):>20s} '
            f'{r["fwd_gflops"]:8.1f} {cell(r["fwd_bwd_ms"], r["fwd_bwd_ms_range"]):>22s} '
            f'{r["fwd_bwd_gflops"]:8.1f}', flush=True)

  # Whole backbone: per repetition, each layer's time times its number of occurrences in VGG16.
  backbone = {impl: {kind: [sum(raw[l[0]][impl][kind][rep] * l[7] for l in layers)
                            for rep in range(args.reps)] for kind in _KINDS} for impl in impls}
  totals = summarize(backbone, base, {kind: sum(layer_flops(l, args.batch)[kind] * l[7]
                                                for l in layers) for kind in _KINDS})
  print(f'\nbackbone (layers above, weighted by occurrence), ms and speed-up over {base}:')
  for impl, t in totals.items():
    print(f'  {impl:9s} fwd {cell(t["fwd_ms"], t["fwd_ms_range"]):>24s} '
          f'({speedup(t["fwd_speedup"])}x)  fwd+bwd '
          f'{cell(t["fwd_bwd_ms"], t["fwd_bwd_ms_range"]):>24s} '
          f'({speedup(t["fwd_bwd_speedup"])}x)')
  common.write_json(args.out, {
      'benchmark': 'bench_conv', 'batch': args.batch, 'reps': args.reps, 'base': base,
      'torch': torch.__version__ if torch else None,
      'glibc_tunables': os.environ.get('GLIBC_TUNABLES', ''), 'layers': results,
      'backbone': totals, 'raw_ms': raw})


if __name__ == '__main__':
  main()
