"""Tests for ssd_jax.models.conv: every impl against a loop-based NumPy convolution and its VJP."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.sharding import PartitionSpec as P

from ssd_jax.models import conv

IMPLS = ('xla', 'cpu_fast', 'winograd6', 'auto')


def _pads_np(padding, in_hw, kernel_hw, strides, dilation):
  """(lo, hi) pairs computed independently of the module (TF 'SAME' rule)."""
  if padding == 'VALID':
    return ((0, 0), (0, 0))
  if padding == 'SAME':
    pads = []
    for size, k, s, d in zip(in_hw, kernel_hw, strides, dilation):
      window = (k - 1) * d + 1
      out = -(-size // s)
      total = max((out - 1) * s + window - size, 0)
      pads.append((total // 2, total - total // 2))
    return tuple(pads)
  if isinstance(padding, int):
    return ((padding, padding), (padding, padding))
  return tuple((p, p) if isinstance(p, int) else tuple(p) for p in padding)


def conv_np(x, kernel, strides, pads, dilation):
  """Direct convolution (cross-correlation) by loops over output pixels and taps, float64."""
  x, kernel = np.asarray(x, np.float64), np.asarray(kernel, np.float64)
  n, h, w, _ = x.shape
  kh, kw, _, cout = kernel.shape
  xp = np.zeros((n, h + pads[0][0] + pads[0][1], w + pads[1][0] + pads[1][1], x.shape[-1]))
  xp[:, pads[0][0]:pads[0][0] + h, pads[1][0]:pads[1][0] + w] = x
  ho = (xp.shape[1] - (kh - 1) * dilation[0] - 1) // strides[0] + 1
  wo = (xp.shape[2] - (kw - 1) * dilation[1] - 1) // strides[1] + 1
  y = np.zeros((n, ho, wo, cout))
  for r in range(ho):
    for c in range(wo):
      for i in range(kh):
        for j in range(kw):
          y[:, r, c] += xp[:, r * strides[0] + i * dilation[0],
                           c * strides[1] + j * dilation[1]] @ kernel[i, j]
  return y


def conv_vjp_np(x, kernel, dy, strides, pads, dilation):
  """Gradients (dx, dkernel) of sum(conv_np(x, kernel) * dy), by the same loops."""
  x, kernel, dy = (np.asarray(a, np.float64) for a in (x, kernel, dy))
  n, h, w, _ = x.shape
  kh, kw = kernel.shape[:2]
  xp = np.zeros((n, h + pads[0][0] + pads[0][1], w + pads[1][0] + pads[1][1], x.shape[-1]))
  xp[:, pads[0][0]:pads[0][0] + h, pads[1][0]:pads[1][0] + w] = x
  dxp, dkernel = np.zeros_like(xp), np.zeros_like(kernel)
  for r in range(dy.shape[1]):
    for c in range(dy.shape[2]):
      for i in range(kh):
        for j in range(kw):
          pr, pc = r * strides[0] + i * dilation[0], c * strides[1] + j * dilation[1]
          dxp[:, pr, pc] += dy[:, r, c] @ kernel[i, j].T
          dkernel[i, j] += xp[:, pr, pc].T @ dy[:, r, c]
  # Negative padding is not used in these tests, so cropping the padding gives dx.
  return dxp[:, pads[0][0]:pads[0][0] + h, pads[1][0]:pads[1][0] + w], dkernel


def _close(actual, expected, rtol):
  """Relative to the largest magnitude: Winograd's error is spread evenly over the output."""
  actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
  assert actual.shape == expected.shape
  np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * np.abs(expected).max())


# (N, H, W, Cin, Cout, kernel, strides, padding, dilation). Cin >= 16 takes the Winograd path
# (3x3 stride 1) or the per-tap matmul path (everything else) of 'cpu_fast'.
CASES = [
    (2, 9, 11, 16, 5, 3, 1, 'SAME', 1),  # Winograd, several tiles, ragged last tile.
    (1, 4, 4, 16, 3, 3, 1, 'SAME', 1),  # Winograd, one tile.
    (2, 7, 6, 17, 4, 3, 1, 'VALID', 1),  # Winograd, no padding.
    (1, 10, 5, 16, 3, 3, 1, ((2, 0), (1, 2)), 1),  # Winograd, asymmetric explicit padding.
    (2, 13, 13, 16, 6, 3, 1, 6, 6),  # Atrous like fc6 (per-tap matmuls).
    (2, 5, 7, 24, 8, 1, 1, 'SAME', 1),  # 1x1 like fc7.
    (2, 9, 8, 16, 5, 3, 2, 'SAME', 1),  # Stride 2 like conv8_2.
    (1, 5, 5, 16, 3, 3, 1, 'VALID', (1, 2)),  # Dilation per dimension.
    (1, 7, 7, 16, 4, 3, (2, 1), ((1, 1), (3, 0)), 1),  # Strides per dimension, padding > 2.
    (2, 7, 7, 16, 4, 2, 1, 'SAME', 1),  # Even kernel.
    (2, 8, 9, 3, 4, 3, 1, 'SAME', 1),  # Few input channels like conv1_1 (XLA, im2col dkernel).
    (1, 9, 8, 3, 4, 3, 2, 'SAME', 1),  # Few channels, strided.
    (1, 9, 9, 5, 4, 3, 1, ((2, 1), (2, 2)), 2),  # Few channels, dilated, asymmetric padding.
    (1, 6, 6, 16, 4, 3, 2, 'VALID', 1),
]


@pytest.mark.parametrize('impl', IMPLS)
@pytest.mark.parametrize('case', CASES, ids=lambda c: '-'.join(map(str, c)))
def test_forward_and_gradients_match_numpy_and_lax(impl, case):
  n, h, w, cin, cout, k, strides, padding, dilation = case
  kx, kk, kd = jax.random.split(jax.random.PRNGKey(sum(case[:6])), 3)
  x = jax.random.normal(kx, (n, h, w, cin))
  kernel = jax.random.normal(kk, (k, k, cin, cout)) / np.sqrt(k * k * cin)
  pair = lambda v: (v, v) if isinstance(v, int) else v
  pads = _pads_np(padding, (h, w), (k, k), pair(strides), pair(dilation))

  fn = lambda x, kernel: conv.conv2d(x, kernel, strides=strides, padding=padding,
                                     dilation=dilation, impl=impl)
  y, vjp = jax.vjp(jax.jit(fn), x, kernel)
  dy = jax.random.normal(kd, y.shape)
  dx, dkernel = vjp(dy)

  # F(6x6, 3x3)'s larger transform coefficients round more: on a 2-core AMD Zen 3 (AVX2) its
  # worst case here was 1.3e-5 of the largest output, F(4x4)'s 3.1e-6 (a wrong transform or tap
  # is off by ~1e-1).
  rtol = 4e-5 if impl == 'winograd6' else 1e-5
  y_np = conv_np(x, kernel, pair(strides), pads, pair(dilation))
  dx_np, dkernel_np = conv_vjp_np(x, kernel, dy, pair(strides), pads, pair(dilation))
  _close(y, y_np, rtol)
  _close(dx, dx_np, rtol)
  _close(dkernel, dkernel_np, rtol)

  lax_fn = lambda x, kernel: lax.conv_general_dilated(
      x, kernel, pair(strides), pads, rhs_dilation=pair(dilation),
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  y_lax, lax_vjp = jax.vjp(jax.jit(lax_fn), x, kernel)
  for actual, expected in zip((y, dx, dkernel), (y_lax, *lax_vjp(dy))):
    _close(actual, expected, rtol)


def test_winograd_matches_at_vgg_like_scale():
  # 256 channels as in conv3: the Winograd transforms' rounding grows with the channel count.
  kx, kk, kd = jax.random.split(jax.random.PRNGKey(3), 3)
  x = jax.random.normal(kx, (1, 10, 10, 256))
  kernel = jax.random.normal(kk, (3, 3, 256, 32)) * 0.03
  dy = jax.random.normal(kd, (1, 10, 10, 32))
  out = {}
  for impl in ('xla', 'cpu_fast', 'winograd6'):
    y, vjp = jax.vjp(jax.jit(lambda x, k, impl=impl: conv.conv2d(x, k, impl=impl)), x, kernel)
    out[impl] = (y, *vjp(dy))
  for impl in ('cpu_fast', 'winograd6'):
    for actual, expected in zip(out[impl], out['xla']):
      _close(actual, expected, 1e-4)


@pytest.mark.parametrize('m', sorted(conv.WINOGRAD))
def test_winograd_matrices_compute_the_1d_correlation(m):
  # The defining identity of F(m, 3): y = A^T [(G g) * (B^T d)] equals the loop correlation
  # y[i] = sum_k d[i + k] g[k], for every (m + 2)-sample d and 3-tap g (checked on a basis).
  wg = conv.WINOGRAD[m]
  assert wg.bt.shape == (m + 2, m + 2) and wg.g.shape == (m + 2, 3) and wg.at.shape == (m, m + 2)
  for p in range(m + 2):
    for k in range(3):
      d, g = np.eye(m + 2)[p], np.eye(3)[k]
      expected = [sum(d[i + j] * g[j] for j in range(3)) for i in range(m)]
      np.testing.assert_allclose(wg.at @ ((wg.g @ g) * (wg.bt @ d)), expected, atol=1e-12)


def test_hand_computed_box_filter():
  # 3x3 ones kernel, SAME: each output is the sum of the 3x3 neighbourhood inside the image.
  x = jnp.arange(16, dtype=jnp.float32).reshape(1, 4, 4, 1)
  kernel = jnp.ones((3, 3, 1, 1))
  expected = np.array([[10, 18, 24, 18],
                       [27, 45, 54, 39],
                       [51, 81, 90, 63],
                       [42, 66, 72, 50]], np.float32)
  conv2d = jax.jit(conv.conv2d, static_argnames='impl')
  for impl in IMPLS:
    np.testing.assert_allclose(conv2d(x, kernel, impl=impl)[0, :, :, 0], expected, atol=1e-4)
  # Same with 16 channels (sum over channels), which takes the Winograd path.
  for impl in ('cpu_fast', 'winograd6'):
    y = conv2d(jnp.tile(x, (1, 1, 1, 16)), jnp.ones((3, 3, 16, 1)), impl=impl)
    np.testing.assert_allclose(y[0, :, :, 0], 16 * expected, rtol=1e-5)


def _primitive_names(fn, *args):
  return {eqn.primitive.name for eqn in jax.make_jaxpr(fn)(*args).eqns}


def test_dispatch():
  x, k3, k1 = jnp.ones((1, 8, 8, 16)), jnp.ones((3, 3, 16, 4)), jnp.ones((1, 1, 16, 4))
  winograd = lambda k, **kw: _primitive_names(lambda a, b: conv.conv2d(a, b, **kw), x, k)
  assert 'custom_vjp_call' in winograd(k3, impl='cpu_fast')
  assert 'custom_vjp_call' in winograd(k3, impl='auto')  # Tests run on CPU.
  assert 'custom_vjp_call' in winograd(k3, impl='winograd6')
  assert 'conv_general_dilated' in winograd(k3, impl='xla')
  assert 'conv_general_dilated' not in winograd(k3, impl='cpu_fast', strides=2)
  assert 'conv_general_dilated' not in winograd(k1, impl='cpu_fast')
  few = lambda a, b: conv.conv2d(a, b, impl='cpu_fast')
  few_args = jnp.ones((1, 8, 8, 3)), jnp.ones((3, 3, 3, 4))
  # XLA's convolution inside a custom VJP (only the kernel gradient is replaced).
  assert 'custom_vjp_call' in _primitive_names(few, *few_args)
  assert 'conv_general_dilated' in str(jax.make_jaxpr(few)(*few_args))


@pytest.mark.parametrize('avx512', (True, False))
@pytest.mark.parametrize('cin, cout, thin', [(16, 8, True), (8 * 16, 16, True),
                                             (128, 128, False)])
def test_auto_takes_thin_input_gradients_from_xla_on_avx512(monkeypatch, avx512, cin, cout, thin):
  monkeypatch.setattr(conv, '_has_avx512', lambda: avx512)
  kx, kk, kd = jax.random.split(jax.random.PRNGKey(cin + cout), 3)
  x = jax.random.normal(kx, (2, 7, 6, cin))
  kernel = jax.random.normal(kk, (3, 3, cin, cout)) / np.sqrt(9 * cin)
  pads = ((2, 1), (0, 2))  # Asymmetric: the input gradient pads by 2 - lo, 2 - hi.
  fn = lambda a, b: conv.conv2d(a, b, padding=pads, impl='auto')
  dy = jax.random.normal(kd, (2, 8, 6, cout))
  grads = lambda x, k, dy: jax.vjp(fn, x, k)[1](dy)
  # The forward pass is Winograd either way; only the input gradient changes hands.
  assert 'custom_vjp_call' in _primitive_names(fn, x, kernel)
  uses_xla = 'conv_general_dilated' in str(jax.make_jaxpr(grads)(x, kernel, dy))
  assert uses_xla == (avx512 and thin)
  dx, dkernel = jax.jit(grads)(x, kernel, dy)
  dx_np, dkernel_np = conv_vjp_np(x, kernel, dy, (1, 1), pads, (1, 1))
  _close(dx, dx_np, 1e-5)
  _close(dkernel, dkernel_np, 1e-5)


# Undilated: the Winograd path of 'cpu_fast' and 'winograd6'; dilated: their per-tap matmuls.
@pytest.mark.parametrize('dilation', (1, 2), ids=('undilated', 'dilated'))
@pytest.mark.parametrize('impl', ('xla', 'cpu_fast', 'winograd6'))
def test_bfloat16(impl, dilation):
  kx, kk, kd = jax.random.split(jax.random.PRNGKey(5), 3)
  x = jax.random.normal(kx, (2, 6, 7, 16)).astype(jnp.bfloat16)
  kernel = (jax.random.normal(kk, (3, 3, 16, 8)) / 12).astype(jnp.bfloat16)
  fn = lambda a, b: conv.conv2d(a, b, padding=dilation, dilation=dilation, impl=impl)
  y, vjp = jax.vjp(jax.jit(fn), x, kernel)
  dy = jax.random.normal(kd, y.shape).astype(jnp.bfloat16)
  dx, dkernel = vjp(dy)
  assert y.dtype == dx.dtype == dkernel.dtype == jnp.bfloat16
  pads, dilations = ((dilation, dilation),) * 2, (dilation, dilation)
  dx_np, dkernel_np = conv_vjp_np(x, kernel, dy, (1, 1), pads, dilations)
  _close(y, conv_np(x, kernel, (1, 1), pads, dilations), 2e-2)
  _close(dx, dx_np, 2e-2)
  _close(dkernel, dkernel_np, 2e-2)


@pytest.mark.parametrize('kwargs', [
    dict(features=8, kernel_size=(3, 3)),
    dict(features=4, kernel_size=(3, 3), kernel_dilation=(6, 6), padding=6),
    dict(features=4, kernel_size=(1, 1), use_bias=False),
    dict(features=4, kernel_size=(3, 3), strides=(2, 2), padding='VALID'),
])
def test_module_is_a_drop_in_for_flax_conv(kwargs):
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 13, 13, 16))
  reference = nn.Conv(**kwargs)
  ref_params = jax.jit(reference.init)(jax.random.PRNGKey(1), x)
  y_ref = jax.jit(reference.apply)(ref_params, x)
  for impl in IMPLS:
    module = conv.Conv(**kwargs, impl=impl)
    params = jax.jit(module.init)(jax.random.PRNGKey(1), x)
    assert jax.tree.structure(params) == jax.tree.structure(ref_params)
    jax.tree.map(np.testing.assert_array_equal, params, ref_params)
    _close(jax.jit(module.apply)(ref_params, x), y_ref, 1e-5)


def test_module_dtype():
  x = jnp.ones((1, 6, 6, 16))
  module = conv.Conv(features=4, kernel_size=3, dtype=jnp.bfloat16, impl='cpu_fast')
  params = jax.jit(module.init)(jax.random.PRNGKey(0), x)
  assert params['params']['kernel'].dtype == jnp.float32
  assert jax.jit(module.apply)(params, x).dtype == jnp.bfloat16


@pytest.mark.parametrize('platform', ('cpu', 'gpu', 'cuda', 'tpu'))
@pytest.mark.parametrize('impl', IMPLS)
def test_resolve_impl(impl, platform):
  want = ('cpu_fast' if platform == 'cpu' else 'xla') if impl == 'auto' else impl
  assert conv.resolve_impl(impl, platform) == want


def test_resolve_impl_rejects_an_unknown_impl():
  for platform in ('cpu', 'gpu', 'tpu'):
    with pytest.raises(ValueError, match=r"impl must be one of \('xla', 'cpu_fast', "
                       r"'winograd6', 'auto'\), got 'fast'"):
      conv.resolve_impl('fast', platform)


def test_bad_arguments():
  x, kernel = jnp.ones((1, 6, 6, 4)), jnp.ones((3, 3, 4, 2))
  with pytest.raises(ValueError, match='impl'):
    conv.conv2d(x, kernel, impl='fast')
  with pytest.raises(ValueError, match='padding'):
    conv.conv2d(x, kernel, padding='CIRCULAR')
  with pytest.raises(ValueError, match='padding'):
    conv.conv2d(x, kernel, padding=(1, 1, 1))
  with pytest.raises(ValueError, match='channels'):
    conv.conv2d(x, jnp.ones((3, 3, 5, 2)))
  with pytest.raises(ValueError, match=r'\[N, H, W, C\]'):
    conv.conv2d(x[0], kernel)
  with pytest.raises(ValueError, match='strides'):
    conv.conv2d(x, kernel, strides=(1, 1, 1))


def test_gradients_inside_shard_map():
  """Replicated kernel, batch sharded on 'data': the custom VJP's kernel gradient is typed and
  summed like XLA's (autodiff psums the kernel's implicit broadcast)."""
  mesh = jax.make_mesh((jax.device_count(),), ('data',))
  kx, kk = jax.random.split(jax.random.PRNGKey(7))
  x = jax.random.normal(kx, (2 * jax.device_count(), 6, 6, 16))
  kernel = jax.random.normal(kk, (3, 3, 16, 8))
  loss = lambda k, a, impl: jnp.sum(conv.conv2d(a, k, padding=1, impl=impl) ** 2)
  per_device = lambda k, a: jax.grad(loss)(k, a, 'cpu_fast')
  sharded = jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P('data')),
                                  out_specs=P()))
  x_sharded = jax.device_put(x, jax.sharding.NamedSharding(mesh, P('data')))
  _close(sharded(kernel, x_sharded), conv_vjp_np(x, kernel, 2 * conv_np(
      x, kernel, (1, 1), ((1, 1), (1, 1)), (1, 1)), (1, 1), ((1, 1), (1, 1)), (1, 1))[1], 1e-4)
