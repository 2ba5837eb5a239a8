"""Speed of the SSD300 VGG16 convolutions per implementation (forward, forward + backward).

For every distinct VGG16-reduced layer shape of SSD300 (batch 8, 300x300 input) this times
``ssd_jax.models.conv.conv2d`` with each ``impl``, and optionally torch's ``F.conv2d`` (oneDNN)
for comparison, interleaving the implementations within each repetition and taking the median
(the machines are shared and noisy; compare ratios rather than absolute numbers). The backbone
line weights each layer by how often it occurs in VGG16 and leaves out conv1_1's input gradient
(the image needs none), as in a train step.

Usage (from the repository root):
  GLIBC_TUNABLES=glibc.malloc.hugetlb=1 .venv/bin/python benchmarks/bench_conv.py \
      [--batch 8] [--reps 3] [--layers conv3_2,fc6] [--impls xla,cpu_fast,winograd6] \
      [--torch_site /tmp/torchvenv/lib/python3.11/site-packages]

``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` lets glibc back XLA's large buffers with transparent
huge pages; without it, first-touch page faults on the freshly allocated buffers of every call
dominate memory-bound ops on these VMs (2-4x slower elementwise work, for every impl).
``--torch_site`` appends a site-packages directory holding torch (kept out of the project venv)
to ``sys.path``. Results go to ``benchmarks/results/bench_conv.json``.
"""

import argparse
import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from ssd_jax.models.conv import IMPLS, conv2d  # pylint: disable=g-import-not-at-top

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


def bench_layer(layer, batch, reps, jax_impls, torch):
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
  times = {impl: ([], []) for impl in fns}
  for rep in range(reps + 1):  # Repetition 0 compiles / warms up and is not timed.
    for impl, (fwd, fwd_bwd) in fns.items():
      for fn, out in zip((fwd, fwd_bwd), times[impl]):
        start = time.perf_counter()
        fn(args[impl])
        if rep:
          out.append(time.perf_counter() - start)
  fwd_flops = 2 * batch * side * side * cin * cout * ksize * ksize
  fwd_bwd_flops = fwd_flops * (3 if needs_dx else 2)
  result = {}
  for impl, (fwd_t, fwd_bwd_t) in times.items():
    fwd_s, fwd_bwd_s = statistics.median(fwd_t), statistics.median(fwd_bwd_t)
    result[impl] = {'fwd_ms': 1e3 * fwd_s, 'fwd_gflops': fwd_flops / fwd_s / 1e9,
                    'fwd_bwd_ms': 1e3 * fwd_bwd_s,
                    'fwd_bwd_gflops': fwd_bwd_flops / fwd_bwd_s / 1e9}
  return result


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
  print(f'batch {args.batch}, {args.reps} reps (median), jax {jax.__version__} on '
        f'{jax.default_backend()}, torch {torch.__version__ if torch else "not found"}, '
        f'GLIBC_TUNABLES={os.environ.get("GLIBC_TUNABLES", "")!r}')
  print(f'{"layer":8s} {"impl":9s} {"fwd ms":>9s} {"GFLOP/s":>8s} {"fwd+bwd ms":>11s} '
        f'{"GFLOP/s":>8s}')
  results = {}
  for layer in layers:
    results[layer[0]] = bench_layer(layer, args.batch, args.reps, jax_impls, torch)
    for impl, r in results[layer[0]].items():
      print(f'{layer[0]:8s} {impl:9s} {r["fwd_ms"]:9.1f} {r["fwd_gflops"]:8.1f} '
            f'{r["fwd_bwd_ms"]:11.1f} {r["fwd_bwd_gflops"]:8.1f}', flush=True)

  # Whole backbone: each layer's time times its number of occurrences in VGG16.
  totals = {impl: {key: sum(results[l[0]][impl][key] * l[7] for l in layers)
                   for key in ('fwd_ms', 'fwd_bwd_ms')} for impl in impls}
  base = jax_impls[0]
  print(f'\nbackbone (layers above, weighted by occurrence), ms and ratio to {base}:')
  for impl, t in totals.items():
    print(f'  {impl:9s} fwd {t["fwd_ms"]:9.1f} ({totals[base]["fwd_ms"] / t["fwd_ms"]:.2f}x)'
          f'  fwd+bwd {t["fwd_bwd_ms"]:9.1f} '
          f'({totals[base]["fwd_bwd_ms"] / t["fwd_bwd_ms"]:.2f}x)')
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, 'w') as f:
    json.dump({'batch': args.batch, 'reps': args.reps, 'jax': jax.__version__,
               'torch': torch.__version__ if torch else None,
               'glibc_tunables': os.environ.get('GLIBC_TUNABLES', ''),
               'layers': results, 'backbone': totals}, f, indent=2)
  print(f'wrote {args.out}')


if __name__ == '__main__':
  main()
