"""Building blocks shared by the SSD networks: the conv factory, Caffe-style pooling, L2Norm.

Every convolution of the models is created by :func:`conv`, so the implementation (XLA's
``lax.conv_general_dilated``, or the Winograd/matmul CPU path of :mod:`ssd_jax.models.conv`)
is switched in one place.
Padding is always explicit and symmetric, as in Caffe/PyTorch: ``'SAME'`` would pad a stride-2
conv on an even input asymmetrically and break the correspondence with pretrained weights.
"""

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssd_jax.models import conv as conv_lib

Array = jax.Array
Dtype = Any
Initializer = Callable[..., Array]

CONV_IMPLS = conv_lib.IMPLS

# Glorot/Xavier uniform, as Caffe SSD and torchvision `_xavier_init` use for fc6/fc7, extras
# and heads (Flax's HWIO fans equal torch's OIHW ones: fan_in = in * kh * kw).
xavier_init = nn.initializers.xavier_uniform()
# torchvision VGG's kaiming_normal_(mode="fan_out", nonlinearity="relu").
vgg_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# He/Kaiming (fan_in) for the small from-scratch backbone.
he_init = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


def conv(features: int, kernel_size: int, *, name: str, stride: int = 1, padding: int = 0,
         dilation: int = 1, dtype: Dtype = jnp.float32, kernel_init: Initializer = xavier_init,
         impl: str = "xla") -> nn.Module:
  """A square 2-D convolution on NHWC inputs with float32 params ``kernel`` (HWIO) and ``bias``.

  Args:
    features: output channels.
    kernel_size: side of the square kernel.
    name: parameter scope name (e.g. ``"conv4_3"``).
    stride, padding, dilation: as in Caffe/PyTorch; ``padding`` pixels on every side.
    dtype: computation dtype (params stay float32).
    kernel_init: kernel initializer; biases start at zero.
    impl: convolution implementation, one of :data:`CONV_IMPLS`: ``"xla"``, ``"cpu_fast"``
      (Winograd, 4x faster backward on XLA:CPU), ``"winograd6"`` (its F(6x6, 3x3) variant) or
      ``"auto"`` (``"cpu_fast"`` on CPU only).
  """
  if impl not in CONV_IMPLS:
    raise ValueError(f"unknown conv impl {impl!r}; valid: {CONV_IMPLS}")
  return conv_lib.Conv(features=features, kernel_size=kernel_size, strides=stride,
                       padding=padding, kernel_dilation=dilation, dtype=dtype,
                       param_dtype=jnp.float32, kernel_init=kernel_init,
                       bias_init=nn.initializers.zeros, impl=impl, name=name)


def max_pool(x: Array, window: int, stride: int, padding: int = 0,
             ceil_mode: bool = False) -> Array:
  """Max pooling of ``[B, H, W, C]`` with PyTorch/Caffe output sizes and gradients.

  ``ceil_mode`` rounds the output size up (Caffe's only mode), e.g. 75 -> 38 for a 2x2/2 pool,
  by padding the bottom/right with -inf; as in PyTorch, a last window starting in the right
  padding is dropped. The gradient of each output goes to the first maximum of its window in
  row-major order (Caffe's and PyTorch's argmax), never split between ties.
  """
  pads = []
  for size in x.shape[1:3]:
    span = size + 2 * padding - window
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
      out -= 1
    pads.append((padding, max(0, (out - 1) * stride + window - size - padding)))
  return _max_pool(x, window, stride, tuple(pads))


def _pool_taps(xp: Array, window: int, stride: int, out_hw: tuple[int, int]) -> list[Array]:
  """The window's window**2 strided views of the padded input, each ``[B, Ho, Wo, C]``."""
  return [jax.lax.slice(xp, (0, i, j, 0),
                        (xp.shape[0], i + stride * (out_hw[0] - 1) + 1,
                         j + stride * (out_hw[1] - 1) + 1, xp.shape[3]), (1, stride, stride, 1))
          for i in range(window) for j in range(window)]


def _pool_forward(x: Array, window: int, stride: int,
                  pads) -> tuple[Array, Array, list[Array]]:
  """The pooled output, the -inf padded input and its taps (see `_pool_taps`)."""
  xp = jnp.pad(x, ((0, 0), *pads, (0, 0)), constant_values=-jnp.inf)
  out_hw = tuple((xp.shape[d] - window) // stride + 1 for d in (1, 2))
  taps = _pool_taps(xp, window, stride, out_hw)
  y = taps[0]
  for tap in taps[1:]:
    y = jnp.maximum(y, tap)
  return y, xp, taps


# Elementwise taps instead of ``lax.reduce_window``: its gradient, XLA's select-and-scatter, ran
# the VGG16 pools' backward at 12% of an SSD300 CPU train step; this one is a fused elementwise
# pass. Caffe, VGG and SSD pool 2x2/2 and 3x3/1, so window**2 taps stay few.
@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool(x: Array, window: int, stride: int, pads) -> Array:
  return _pool_forward(x, window, stride, pads)[0]


def _max_pool_fwd(x, window, stride, pads):
  return _pool_forward(x, window, stride, pads)[0], x


def _max_pool_bwd(window, stride, pads, x, dy):
  y, xp, taps = _pool_forward(x, window, stride, pads)
  taken = jnp.zeros(y.shape, bool)
  dxp = jnp.zeros(xp.shape, dy.dtype)
  zero = jnp.zeros((), dy.dtype)
  for index, tap in enumerate(taps):
    first = (tap == y) & ~taken
    taken = taken | first
    i, j = divmod(index, window)
    # Scatter tap (i, j)'s share back to its strided input positions: interior padding.
    spread = [(0, 0, 0)] + [(lo, size - lo - stride * (n - 1) - 1, stride - 1)
                            for lo, size, n in zip((i, j), xp.shape[1:3], y.shape[1:3])]
    dxp = dxp + jax.lax.pad(jnp.where(first, dy, zero), zero, spread + [(0, 0, 0)])
  (top, _), (left, _) = pads
  return (dxp[:, top:top + x.shape[1], left:left + x.shape[2]],)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


class L2Norm(nn.Module):
  """Caffe ``Normalize``: ``x / sqrt(sum_c x^2 + eps) * scale_c`` over the channel axis.

  The learned per-channel ``scale`` starts at ``scale_init`` (20 in SSD, for conv4_3 whose
  activations are much larger than those of later layers). Computed in float32 whatever the
  input dtype; the result is cast back to ``dtype``.
  """
  scale_init: float = 20.0
  epsilon: float = 1e-10
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    scale = self.param("scale", nn.initializers.constant(self.scale_init), (x.shape[-1],),
                       jnp.float32)
    x = x.astype(jnp.float32)
    y = x * jax.lax.rsqrt(jnp.sum(x * x, axis=-1, keepdims=True) + self.epsilon) * scale
    return y.astype(self.dtype)
