"""2-D convolution for the SSD VGG16 layers, with a faster CPU path (Winograd F(4x4, 3x3)).

XLA:CPU runs the backward pass of ``lax.conv_general_dilated`` several times slower than its
forward pass, which makes it the bottleneck of an SSD train step on CPU. ``impl='cpu_fast'``
replaces stride-1, undilated 3x3 convolutions by Winograd's minimal filtering algorithm
F(4x4, 3x3) (Lavin & Gray, 2016): each 6x6 input tile and the 3x3 kernel are mapped to a 6x6
"Winograd domain", where the convolution becomes 36 independent ``[tiles, Cin] @ [Cin, Cout]``
matmuls (2.25 multiplies per output instead of 9). A ``jax.custom_vjp`` gives it a backward
pass of the same kind: the input gradient is the Winograd convolution of the output gradient
with the flipped, transposed kernel, and the kernel gradient is 36 ``[Cin, tiles] @ [tiles,
Cout]`` matmuls in the Winograd domain mapped back by the kernel transform's adjoint. Results
match ``lax.conv_general_dilated`` to ~1e-5 relative in float32; the transforms are computed in
at least float32, so bfloat16 inputs lose no extra precision. Every other case (strides,
dilation, other kernel sizes, padding beyond 2) becomes one matmul per kernel tap, and inputs
with fewer than 16 channels use ``lax.conv_general_dilated`` with an im2col-matmul kernel
gradient. On AVX-512 CPUs ``impl='auto'`` takes the input gradient of thin (< 128 channel)
Winograd layers from XLA's convolution, which was faster there. ``impl='winograd6'`` uses
F(6x6, 3x3) instead (8x8 tiles, 64 matmuls, 1.78 multiplies per output, ~2x the float32
rounding error): fewer multiplies but larger transforms, which on CPU are memory-bound.

Layout: inputs NHWC, kernels HWIO ``[kh, kw, in, out]``, outputs NHWC (as ``flax.linen.Conv``).
"""

import functools
from typing import Callable, NamedTuple, Optional, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

PaddingLike = Union[str, int, Sequence[Union[int, tuple[int, int]]]]
IMPLS = ('xla', 'cpu_fast', 'winograd6', 'auto')
_DIMENSION_NUMBERS = ('NHWC', 'HWIO', 'NHWC')

class _Winograd(NamedTuple):
  """Winograd F(m, 3): for an (m + 2)-sample input d and a 3-tap filter f, the m outputs of the
  correlation y[i] = sum_k d[i + k] f[k] are y = at @ [(g @ f) * (bt @ d)]."""
  m: int
  bt: np.ndarray  # [m + 2, m + 2]
  g: np.ndarray  # [m + 2, 3]
  at: np.ndarray  # [m, m + 2]


# Both from Lavin & Gray (2016). F(4, 3): interpolation points 0, +-1, +-2, inf; 36 matmuls per
# layer, 2.25 multiplies per output. F(6, 3): points 0, +-1, +-2, +-1/2, inf; 64 matmuls over
# 4/9 as many tiles, 1.78 multiplies per output, but larger transforms and coefficients (about
# twice the float32 rounding error).
_F4 = _Winograd(
    m=4,
    bt=np.array([[4, 0, -5, 0, 1, 0],
                 [0, -4, -4, 1, 1, 0],
                 [0, 4, -4, -1, 1, 0],
                 [0, -2, -1, 2, 1, 0],
                 [0, 2, -1, -2, 1, 0],
                 [0, 4, 0, -5, 0, 1]], np.float64),
    g=np.array([[1 / 4, 0, 0],
                [-1 / 6, -1 / 6, -1 / 6],
                [-1 / 6, 1 / 6, -1 / 6],
                [1 / 24, 1 / 12, 1 / 6],
                [1 / 24, -1 / 12, 1 / 6],
                [0, 0, 1]], np.float64),
    at=np.array([[1, 1, 1, 1, 1, 0],
                 [0, 1, -1, 2, -2, 0],
                 [0, 1, 1, 4, 4, 0],
                 [0, 1, -1, 8, -8, 1]], np.float64))
_F6 = _Winograd(
    m=6,
    bt=np.array([[1, 0, -21 / 4, 0, 21 / 4, 0, -1, 0],
                 [0, 1, 1, -17 / 4, -17 / 4, 1, 1, 0],
                 [0, -1, 1, 17 / 4, -17 / 4, -1, 1, 0],
                 [0, 1 / 2, 1 / 4, -5 / 2, -5 / 4, 2, 1, 0],
                 [0, -1 / 2, 1 / 4, 5 / 2, -5 / 4, -2, 1, 0],
                 [0, 2, 4, -5 / 2, -5, 1 / 2, 1, 0],
                 [0, -2, 4, 5 / 2, -5, -1 / 2, 1, 0],
                 [0, -1, 0, 21 / 4, 0, -21 / 4, 0, 1]], np.float64),
    g=np.array([[1, 0, 0],
                [-2 / 9, -2 / 9, -2 / 9],
                [-2 / 9, 2 / 9, -2 / 9],
                [1 / 90, 1 / 45, 2 / 45],
                [1 / 90, -1 / 45, 2 / 45],
                [32 / 45, 16 / 45, 8 / 45],
                [32 / 45, -16 / 45, 8 / 45],
                [0, 0, 1]], np.float64),
    at=np.array([[1, 1, 1, 1, 1, 1, 1, 0],
                 [0, 1, -1, 2, -2, 1 / 2, -1 / 2, 0],
                 [0, 1, 1, 4, 4, 1 / 4, 1 / 4, 0],
                 [0, 1, -1, 8, -8, 1 / 8, -1 / 8, 0],
                 [0, 1, 1, 16, 16, 1 / 16, 1 / 16, 0],
                 [0, 1, -1, 32, -32, 1 / 32, -1 / 32, 1]], np.float64))
WINOGRAD = {wg.m: wg for wg in (_F4, _F6)}


def _pair(value: Union[int, Sequence[int]], name: str) -> tuple[int, int]:
  if isinstance(value, int):
    return (value, value)
  value = tuple(value)
  if len(value) != 2 or not all(isinstance(v, (int, np.integer)) for v in value):
    raise ValueError(f'{name} must be an int or a pair of ints, got {value!r}.')
  return (int(value[0]), int(value[1]))


def _explicit_padding(padding: PaddingLike, in_hw: tuple[int, int], kernel_hw: tuple[int, int],
                      strides: tuple[int, int],
                      dilation: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
  """Resolves 'SAME' / 'VALID' / int / per-dimension ints or (lo, hi) pairs to (lo, hi) pairs."""
  if isinstance(padding, str):
    if padding not in ('SAME', 'VALID'):
      raise ValueError(f"padding must be 'SAME', 'VALID', an int or per-dimension ints / (lo, hi) "
                       f'pairs, got {padding!r}.')
    window = tuple((k - 1) * d + 1 for k, d in zip(kernel_hw, dilation))
    return tuple(tuple(p) for p in lax.padtype_to_pads(in_hw, window, strides, padding))
  if isinstance(padding, int):
    return ((padding, padding), (padding, padding))
  padding = tuple(padding)
  if len(padding) != 2:
    raise ValueError(f'padding needs one entry per spatial dimension (2), got {padding!r}.')
  return tuple((p, p) if isinstance(p, int) else _pair(p, 'each padding entry') for p in padding)


def _lincomb(coefs: np.ndarray, terms: Sequence[jax.Array]) -> jax.Array:
  """sum_i coefs[i] * terms[i], skipping zero coefficients and multiplications by +-1."""
  out = None
  for c, term in zip(coefs, terms):
    if c == 0:
      continue
    term = term if c == 1 else -term if c == -1 else term * np.asarray(c, term.dtype)
    out = term if out is None else out + term
  return out


def _num_tiles(out_hw: tuple[int, int], m: int) -> tuple[int, int]:
  return tuple(-(-n // m) for n in out_hw)


def _input_transform(x: jax.Array, pads: tuple[tuple[int, int], tuple[int, int]],
                     tiles: tuple[int, int], wg: _Winograd) -> jax.Array:
  """B^T d B of every (m + 2)^2 tile (stride m) of the padded input.

  Args:
    x: [N, H, W, C] input, not yet padded.
    pads: (lo, hi) zero padding of H and W; the padded input is cut or zero-extended at the
      bottom/right to m * tiles + 2 pixels.
    tiles: (th, tw), number of m x m output tiles along H and W.
    wg: the Winograd F(m, 3) matrices.

  Returns:
    [t * t, N * th * tw, C] tiles in the Winograd domain (t = m + 2), index t * alpha + beta.
  """
  (th, tw), m = tiles, wg.m
  t = m + 2
  n, h, w, c = x.shape
  # One extra block of m rows/columns so that tile i is block i plus the first 2 rows of
  # block i + 1: contiguous slices of a reshape instead of strided gathers (faster in XLA).
  # The extra zeros beyond the requested padding only reach outputs that are cropped away.
  size = (m * (th + 1), m * (tw + 1))
  x = jnp.pad(x, ((0, 0), (pads[0][0], size[0] - pads[0][0] - h),
                  (pads[1][0], size[1] - pads[1][0] - w), (0, 0)))
  blocks = x.reshape(n, th + 1, m, size[1], c)
  rows = [blocks[:, :th, a] if a < m else blocks[:, 1:, a - m] for a in range(t)]
  z = jnp.stack([_lincomb(wg.bt[alpha], rows) for alpha in range(t)])  # [t, N, th, W', C]
  blocks = z.reshape(t, n, th, tw + 1, m, c)
  cols = [blocks[:, :, :, :tw, b] if b < m else blocks[:, :, :, 1:, b - m] for b in range(t)]
  v = jnp.stack([_lincomb(wg.bt[beta], cols) for beta in range(t)], axis=1)  # [t, t, N, th, tw, C]
  return v.reshape(t * t, n * th * tw, c)


def _output_transform(m_: jax.Array, batch: int, out_hw: tuple[int, int],
                      wg: _Winograd) -> jax.Array:
  """A^T M A of every tile, [t * t, N * th * tw, K] -> [N, Ho, Wo, K] (inverse of the tiling).

  One kron(A^T, A^T) [m * m, t * t] @ [t * t, tiles * K] matmul, then a transpose into NHWC
  that XLA fuses with what consumes the output (bias, ReLU, the next layer's padding). Two
  separable passes (rows, then columns) need fewer multiplies but write an intermediate larger
  than the output as strided concatenates: measured slower on a 2-core Xeon;
  benchmarks/HISTORY.md. The input transform stays separable: as a matmul it needs the
  overlapping tiles copied out first (measured slower; benchmarks/HISTORY.md).
  """
  m = wg.m
  (th, tw), t = _num_tiles(out_hw, m), m + 2
  k = m_.shape[-1]
  aa = np.kron(wg.at, wg.at).astype(m_.dtype)
  y = (aa @ m_.reshape(t * t, -1)).reshape(m, m, batch, th, tw, k)  # [p, q, N, th, tw, K]
  y = y.transpose(2, 3, 0, 4, 1, 5).reshape(batch, th * m, tw * m, k)
  return y[:, :out_hw[0], :out_hw[1]]


def _output_transform_adjoint(dy: jax.Array, wg: _Winograd) -> jax.Array:
  """Adjoint of `_output_transform`: [N, Ho, Wo, K] -> [t * t, N * th * tw, K].

  The tiles of dy (zero-extended to whole tiles) in tile-position-major order, then the
  transposed kron(A^T, A^T) as one matmul.
  """
  n, ho, wo, k = dy.shape
  m = wg.m
  (th, tw), t = _num_tiles((ho, wo), m), m + 2
  dy = jnp.pad(dy, ((0, 0), (0, m * th - ho), (0, m * tw - wo), (0, 0)))
  tiles = dy.reshape(n, th, m, tw, m, k).transpose(2, 4, 0, 1, 3, 5).reshape(m * m, -1)
  aa = np.kron(wg.at, wg.at).astype(dy.dtype)
  return (aa.T @ tiles).reshape(t * t, n * th * tw, k)


def _kernel_transform(kernel: jax.Array, wg: _Winograd) -> jax.Array:
  """G g G^T: [3, 3, C, K] -> [t * t, C, K], as one [t * t, 9] @ [9, C * K] matmul.

  The Kronecker product kron(G, G)[t * a + b, 3 * k + l] = G[a, k] G[b, l] maps the 9 taps to
  the t * t Winograd positions directly in the layout of the batched matmuls; an einsum over
  the two kernel axes made XLA transpose the whole kernel around two thin matmuls.
  """
  gg = np.kron(wg.g, wg.g).astype(kernel.dtype)
  return (gg @ kernel.reshape(9, -1)).reshape(gg.shape[0], *kernel.shape[2:])


def _kernel_transform_adjoint(du: jax.Array, wg: _Winograd) -> jax.Array:
  """Adjoint of `_kernel_transform`: [t * t, C, K] -> [3, 3, C, K]."""
  gg = np.kron(wg.g, wg.g).astype(du.dtype)
  return (gg.T @ du.reshape(gg.shape[0], -1)).reshape(3, 3, *du.shape[1:])


def _winograd_forward(x: jax.Array, kernel: jax.Array, pads, wg: _Winograd) -> jax.Array:
  n, h, w, _ = x.shape
  out_hw = (h + sum(pads[0]) - 2, w + sum(pads[1]) - 2)
  v = _input_transform(x, pads, _num_tiles(out_hw, wg.m), wg)
  m_ = lax.dot_general(v, _kernel_transform(kernel, wg), (((2,), (1,)), ((0,), (0,))))
  return _output_transform(m_, n, out_hw, wg)


def _xla_conv(x: jax.Array, kernel: jax.Array, strides, pads, dilation) -> jax.Array:
  return lax.conv_general_dilated(x, kernel, strides, pads, rhs_dilation=dilation,
                                  dimension_numbers=_DIMENSION_NUMBERS)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _winograd_conv(x: jax.Array, kernel: jax.Array, pads, tile: int, xla_dx: bool) -> jax.Array:
  """Winograd F(tile x tile, 3x3) convolution; ``xla_dx`` takes the input gradient from XLA."""
  return _winograd_forward(x, kernel, pads, WINOGRAD[tile])


def _winograd_conv_fwd(x, kernel, pads, tile, xla_dx):
  # Save only the inputs: inside one jitted train step XLA merges the backward's input transform
  # with this one (a common subexpression), so saving the Winograd-domain input explicitly gains
  # nothing (measured the same; benchmarks/HISTORY.md), and outside jit the recomputation spares
  # memory.
  return _winograd_forward(x, kernel, pads, WINOGRAD[tile]), (x, kernel)


def _winograd_conv_bwd(pads, tile, xla_dx, res, dy):
  x, kernel = res
  wg = WINOGRAD[tile]
  # dx is the correlation of dy, padded by (2 - lo, 2 - hi), with the flipped, transposed kernel:
  # a forward convolution, which XLA:CPU runs well (only its kernel gradient is slow).
  flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
  dx_pads = tuple((2 - lo, 2 - hi) for lo, hi in pads)
  dx = (_xla_conv(dy, flipped, (1, 1), dx_pads, (1, 1)) if xla_dx
        else _winograd_forward(dy, flipped, dx_pads, wg))
  # dkernel: adjoint of kernel transform and the matmul, summed over tiles by the matmul itself.
  v = _input_transform(x, pads, _num_tiles(dy.shape[1:3], wg.m), wg)
  du = lax.dot_general(v, _output_transform_adjoint(dy, wg), (((1,), (1,)), ((0,), (0,))))
  return dx, _kernel_transform_adjoint(du, wg)


_winograd_conv.defvjp(_winograd_conv_fwd, _winograd_conv_bwd)


# Below this many input channels the Winograd/tap matmuls are too thin to beat XLA's direct
# convolution (SSD's conv1_1 sees 3 RGB channels and needs no input gradient); only the kernel
# gradient is replaced (`_few_channel_conv`).
_MIN_MATMUL_CHANNELS = 16


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _few_channel_conv(x: jax.Array, kernel: jax.Array, strides, pads, dilation) -> jax.Array:
  return _xla_conv(x, kernel, strides, pads, dilation)


def _few_channel_conv_fwd(x, kernel, strides, pads, dilation):
  return _xla_conv(x, kernel, strides, pads, dilation), (x, kernel)


def _few_channel_conv_bwd(strides, pads, dilation, res, dy):
  """XLA's input gradient; the kernel gradient as one im2col matmul, [kh * kw * Cin, pixels] @
  [pixels, Cout] (measured faster than XLA:CPU's own for conv1_1; benchmarks/HISTORY.md)."""
  x, kernel = res
  dx = jax.vjp(lambda a: _xla_conv(a, kernel, strides, pads, dilation), x)[1](dy)[0]
  kh, kw, cin, cout = kernel.shape
  xp = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), *((lo, hi, 0) for lo, hi in pads),
                                             (0, 0, 0)))
  ho, wo = dy.shape[1:3]
  patches = jnp.concatenate(
      [lax.slice(xp, (0, i * dilation[0], j * dilation[1], 0),
                 (xp.shape[0], i * dilation[0] + strides[0] * (ho - 1) + 1,
                  j * dilation[1] + strides[1] * (wo - 1) + 1, cin), (1, *strides, 1))
       for i in range(kh) for j in range(kw)], axis=-1)  # [N, Ho, Wo, kh * kw * Cin]
  dkernel = lax.dot_general(patches.reshape(-1, kh * kw * cin), dy.reshape(-1, cout),
                            (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32)
  return dx, dkernel.reshape(kernel.shape).astype(kernel.dtype)


_few_channel_conv.defvjp(_few_channel_conv_fwd, _few_channel_conv_bwd)


# On AVX-512 CPUs 'auto' takes the input gradient of thin Winograd layers (fewer than this many
# input or output channels: SSD's conv1_2, conv2_1 and multibox heads) from XLA's convolution:
# measured faster there on a 2-core Xeon, and at 128 channels and more the Winograd one was as
# fast or faster. AVX2-only CPUs keep the Winograd input gradient: multiplies cost twice as much
# there, so Winograd saves more (XLA's measured slower on a Zen 3); benchmarks/HISTORY.md.
_XLA_DX_BELOW_CHANNELS = 128


@functools.cache
def _has_avx512() -> bool:
  """Whether the CPU (Linux ``/proc/cpuinfo``) has AVX-512 Foundation; False where unknown."""
  try:
    with open('/proc/cpuinfo') as f:
      return any(line.startswith('flags') and 'avx512f' in line.split() for line in f)
  except OSError:
    return False


def _use_winograd(kernel_hw, strides, dilation, pads) -> bool:
  return (kernel_hw == (3, 3) and strides == (1, 1) and dilation == (1, 1)
          and all(0 <= p <= 2 for pair in pads for p in pair))


def _tap_range(size: int, out_size: int, offset: int, stride: int) -> tuple[int, int]:
  """Outputs o in [start, stop) whose input o * stride + offset lies inside [0, size)."""
  start = max(0, -(offset // stride))
  stop = min(out_size, (size - 1 - offset) // stride + 1)
  return start, max(start, stop)


def _tap_matmul_conv(x: jax.Array, kernel: jax.Array, strides, pads, dilation) -> jax.Array:
  """Convolution as one [pixels, Cin] @ [Cin, Cout] matmul per kernel tap, autodiffed.

  Each tap only multiplies the output pixels whose input lies inside the image, so taps that
  fall into zero padding cost nothing: for the atrous fc6 (3x3, dilation 6, padding 6 on 19x19)
  that is 38% fewer multiplies than a direct convolution. The backward pass is plain matmuls,
  unlike XLA:CPU's convolution backward.
  """
  n, h, w, _ = x.shape
  kh, kw, _, cout = kernel.shape
  out_hw = tuple((size + lo + hi - (k - 1) * d - 1) // s + 1 for size, (lo, hi), k, d, s in
                 zip((h, w), pads, (kh, kw), dilation, strides))
  y = jnp.zeros((n, *out_hw, cout), jnp.result_type(x, kernel))
  for i in range(kh):
    for j in range(kw):
      offsets = (i * dilation[0] - pads[0][0], j * dilation[1] - pads[1][0])
      (r0, r1), (c0, c1) = (_tap_range(size, out, off, s) for size, out, off, s in
                            zip((h, w), out_hw, offsets, strides))
      if r0 == r1 or c0 == c1:
        continue
      patch = x[:, r0 * strides[0] + offsets[0]:(r1 - 1) * strides[0] + offsets[0] + 1:strides[0],
                c0 * strides[1] + offsets[1]:(c1 - 1) * strides[1] + offsets[1] + 1:strides[1]]
      y = y.at[:, r0:r1, c0:c1].add(patch @ kernel[i, j])
  return y


def _same_varying_axes(x: jax.Array, kernel: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Inside ``shard_map``, marks both operands as varying over the same mesh axes.

  A custom VJP must return cotangents typed like its inputs, but the kernel gradient of a
  per-device batch varies over the batch axis while replicated params do not. Broadcasting the
  kernel explicitly (``pcast`` to varying) before the custom VJP lets autodiff transpose that
  broadcast into the psum over devices, exactly as it does for ``lax.conv_general_dilated``.
  Outside ``shard_map`` both sets are empty and nothing changes.
  """
  vx, vk = (jax.typeof(a).manual_axis_type.varying for a in (x, kernel))
  if vx - vk:
    kernel = lax.pcast(kernel, tuple(sorted(vx - vk)), to='varying')
  if vk - vx:
    x = lax.pcast(x, tuple(sorted(vk - vx)), to='varying')
  return x, kernel


def resolve_impl(impl: str, platform: str) -> str:
  """The implementation that ``impl`` stands for on ``platform``.

  ``'auto'`` is ``'cpu_fast'`` on ``'cpu'`` (where XLA's convolution backward pass is the slow
  part this module replaces) and ``'xla'`` on any other platform (``'gpu'``, ``'cuda'``,
  ``'rocm'``, ``'tpu'``: ``jax.default_backend()``'s and ``jax.export``'s names); every other
  impl stands for itself. :func:`conv2d` resolves it for the default backend; an export resolves
  it for each platform it lowers to (``ssd_jax.export``).

  Raises:
    ValueError: ``impl`` is not one of :data:`IMPLS`.
  """
  if impl not in IMPLS:
    raise ValueError(f'impl must be one of {IMPLS}, got {impl!r}.')
  if impl != 'auto':
    return impl
  return 'cpu_fast' if platform == 'cpu' else 'xla'


def conv2d(x: jax.Array, kernel: jax.Array, *, strides: Union[int, Sequence[int]] = 1,
           padding: PaddingLike = 'SAME', dilation: Union[int, Sequence[int]] = 1,
           impl: str = 'xla') -> jax.Array:
  """2-D convolution (cross-correlation, as ``lax.conv_general_dilated``) of NHWC inputs.

  Args:
    x: [N, H, W, Cin] input.
    kernel: [kh, kw, Cin, Cout] kernel (HWIO).
    strides: int or (sh, sw).
    padding: 'SAME', 'VALID', an int (same on all sides), or per spatial dimension an int or a
      (lo, hi) pair.
    dilation: kernel (atrous) dilation, int or (dh, dw).
    impl: 'xla' (``lax.conv_general_dilated``), 'cpu_fast' (Winograd F(4x4, 3x3) with a custom
      backward pass for stride-1 undilated 3x3 convolutions with padding 0..2, per-tap
      matmuls for the rest; XLA's convolution with an im2col kernel gradient whenever
      Cin < 16), 'winograd6' ('cpu_fast' with F(6x6, 3x3) tiles, kept to measure on other
      CPUs: not faster on those measured; benchmarks/HISTORY.md) or 'auto' (the default
      backend's choice, :func:`resolve_impl`; on AVX-512 CPUs with XLA's convolution for the
      input gradient of Winograd layers with fewer than 128 input or output channels).

  Returns:
    [N, Ho, Wo, Cout] output, dtype of ``x`` and ``kernel`` promoted.
  """
  auto = impl == 'auto'
  impl = resolve_impl(impl, jax.default_backend())
  if x.ndim != 4 or kernel.ndim != 4:
    raise ValueError(f'conv2d needs x [N, H, W, C] and kernel [kh, kw, in, out], got shapes '
                     f'{x.shape} and {kernel.shape}.')
  if x.shape[-1] != kernel.shape[2]:
    raise ValueError(f'x has {x.shape[-1]} channels but kernel expects {kernel.shape[2]} '
                     f'(kernel shape {kernel.shape}).')
  strides, dilation = _pair(strides, 'strides'), _pair(dilation, 'dilation')
  kernel_hw = tuple(kernel.shape[:2])
  pads = _explicit_padding(padding, tuple(x.shape[1:3]), kernel_hw, strides, dilation)
  if impl != 'xla' and x.shape[-1] < _MIN_MATMUL_CHANNELS:
    x, kernel = _same_varying_axes(x, kernel)
    return _few_channel_conv(x, kernel, strides, pads, dilation)
  if impl != 'xla' and _use_winograd(kernel_hw, strides, dilation, pads):
    tile = 6 if impl == 'winograd6' else 4
    dtype = jnp.result_type(x, kernel)
    compute = jnp.promote_types(dtype, jnp.float32)
    xla_dx = auto and min(kernel.shape[2:]) < _XLA_DX_BELOW_CHANNELS and _has_avx512()
    x, kernel = _same_varying_axes(x, kernel)
    y = _winograd_conv(x.astype(compute), kernel.astype(compute), pads, tile, xla_dx)
    return y.astype(dtype)
  if impl != 'xla':
    return _tap_matmul_conv(x, kernel, strides, pads, dilation)
  return _xla_conv(x, kernel, strides, pads, dilation)


class Conv(nn.Module):
  """Drop-in for ``flax.linen.Conv`` (2-D, NHWC) with a selectable convolution implementation.

  Parameters are named and shaped as in ``nn.Conv`` (``kernel`` [kh, kw, in, out], ``bias``
  [out]), so parameter trees are interchangeable.

  Attributes:
    features: number of output channels.
    kernel_size: int or (kh, kw).
    strides: int or (sh, sw).
    padding: 'SAME', 'VALID', an int, or per spatial dimension an int or a (lo, hi) pair.
    kernel_dilation: int or (dh, dw) atrous dilation.
    use_bias: add a learned bias.
    dtype: computation dtype (None: promoted from input and parameters).
    param_dtype: parameter dtype.
    kernel_init: kernel initializer.
    bias_init: bias initializer.
    impl: 'xla', 'cpu_fast', 'winograd6' or 'auto' (see :func:`conv2d`).
  """
  features: int
  kernel_size: Union[int, Sequence[int]]
  strides: Union[int, Sequence[int]] = 1
  padding: PaddingLike = 'SAME'
  kernel_dilation: Union[int, Sequence[int]] = 1
  use_bias: bool = True
  dtype: Optional[jnp.dtype] = None
  param_dtype: jnp.dtype = jnp.float32
  kernel_init: Callable = nn.initializers.lecun_normal()
  bias_init: Callable = nn.initializers.zeros_init()
  impl: str = 'xla'

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """[N, H, W, Cin] -> [N, Ho, Wo, features]."""
    kernel_hw = _pair(self.kernel_size, 'kernel_size')
    kernel = self.param('kernel', self.kernel_init, (*kernel_hw, x.shape[-1], self.features),
                        self.param_dtype)
    bias = (self.param('bias', self.bias_init, (self.features,), self.param_dtype)
            if self.use_bias else None)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    y = conv2d(x, kernel, strides=self.strides, padding=self.padding,
               dilation=self.kernel_dilation, impl=self.impl)
    return y if bias is None else y + bias
