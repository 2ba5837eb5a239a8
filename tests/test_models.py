"""Tests for ssd_jax.models: shapes vs prior specs, ordering, L2Norm, pooling, dtypes, ablations.

The VGG models are only traced (`jax.eval_shape`); real forward passes use ssd_tiny.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssd_jax import priors
from ssd_jax import models
from ssd_jax.models import layers


def _abstract_init(model, batch=1):
  s = model.image_size
  return jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((batch, s, s, 3)))


def _head_filter(module, method_name):
  return method_name == "__call__" and (module.name or "").endswith(("_mbox_loc", "_mbox_conf"))


def _trace_heads(model, batch=2):
  """eval_shape of a forward pass, capturing every head's raw output."""
  variables = _abstract_init(model)
  s = model.image_size
  fn = lambda v, x: model.apply(v, x, capture_intermediates=_head_filter, mutable="intermediates")
  (loc, logits), state = jax.eval_shape(fn, variables, jnp.zeros((batch, s, s, 3)))
  return variables, loc, logits, state["intermediates"]


@pytest.fixture(scope="module")
def tiny():
  """ssd_tiny with 3 classes, its variables and a jitted apply (compiled once per module)."""
  model = models.create_model("ssd_tiny", num_classes=3)
  variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 128, 128, 3)))
  return model, variables, jax.jit(model.apply)


def _images(seed, batch=2):
  return jnp.asarray(np.random.RandomState(seed).uniform(0, 255, (batch, 128, 128, 3)),
                     jnp.float32)


def _num_params(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("name", models.MODEL_NAMES)
def test_head_shapes_match_prior_spec_layer_by_layer(name):
  num_classes = 7
  model = models.create_model(name, num_classes)
  spec = model.prior_spec
  _, loc, logits, heads = _trace_heads(model, batch=2)
  num_priors = priors.generate(spec).shape[0]
  assert loc.shape == (2, num_priors, 4) and logits.shape == (2, num_priors, num_classes + 1)
  assert num_priors == sum(f * f * b for f, b in zip(spec.feature_map_sizes, spec.boxes_per_cell))
  assert len(heads) == 2 * spec.num_layers
  for layer, f, b in zip(spec.layer_names, spec.feature_map_sizes, spec.boxes_per_cell):
    assert heads[f"{layer}_mbox_loc"]["__call__"][0].shape == (2, f, f, b * 4)
    assert heads[f"{layer}_mbox_conf"]["__call__"][0].shape == (2, f, f, b * (num_classes + 1))


@pytest.mark.parametrize("variant,image_size,expected", [
    ("ssd300", 300, {"conv4_3": (38, 512), "fc7": (19, 1024), "conv8_2": (10, 512),
                     "conv9_2": (5, 256), "conv10_2": (3, 256), "conv11_2": (1, 256)}),
    ("ssd512", 512, {"conv4_3": (64, 512), "fc7": (32, 1024), "conv8_2": (16, 512),
                     "conv9_2": (8, 256), "conv10_2": (4, 256), "conv11_2": (2, 256),
                     "conv12_2": (1, 256)}),
])
def test_vgg_feature_map_sizes(variant, image_size, expected):
  backbone = models.VGG16Backbone(variant=variant)
  x = jnp.zeros((1, image_size, image_size, 3))
  variables = jax.eval_shape(backbone.init, jax.random.key(0), x)
  feats = jax.eval_shape(backbone.apply, variables, x)
  assert backbone.source_names == tuple(expected)
  assert set(feats) == set(expected)
  for name, (size, channels) in expected.items():
    assert feats[name].shape == (1, size, size, channels), name


def test_ssd300_parameter_count():
  """Counted by hand from the layer list: 3x3 kernels carry 9 * in * out weights, plus biases."""
  conv = lambda k, cin, cout: k * k * cin * cout + cout
  vgg = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
         (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]
  n_vgg = sum(conv(3, cin, cout) for cin, cout in vgg)
  assert n_vgg == 14_714_688  # torchvision vgg16().features
  n_fc = conv(3, 512, 1024) + conv(1, 1024, 1024)  # atrous fc6, fc7
  n_norm = 512  # L2Norm scale of conv4_3
  n_extras = (conv(1, 1024, 256) + conv(3, 256, 512) + conv(1, 512, 128) + conv(3, 128, 256)
              + 2 * (conv(1, 256, 128) + conv(3, 128, 256)))
  sources = [512, 1024, 512, 256, 256, 256]
  boxes = [4, 6, 6, 6, 4, 4]
  n_heads = sum(conv(3, c, b * 4) + conv(3, c, b * 21) for c, b in zip(sources, boxes))
  expected = n_vgg + n_fc + n_norm + n_extras + n_heads
  assert expected == 26_285_486
  model = models.create_model("ssd300_vgg16", num_classes=20)
  assert _num_params(_abstract_init(model)) == expected


@pytest.mark.parametrize("image_size,sizes", [(128, (16, 8, 4, 2, 1)), (300, (38, 19, 10, 5, 3)),
                                               (320, (40, 20, 10, 5, 3)), (100, (13, 7, 4, 2, 1))])
def test_ssd_tiny_priors_follow_its_input_size(image_size, sizes):
  """The layout of ``tiny_priors(S)`` is the backbone's maps for an S x S input (traced); the
  normalized scales stay 0.1 .. 0.9 whatever S."""
  spec = models.tiny_priors(image_size)
  assert spec.feature_map_sizes == sizes and spec.image_size == image_size
  np.testing.assert_allclose(spec.scales, [0.1, 0.3, 0.5, 0.7, 0.9])
  model = models.create_model("ssd_tiny", 2, prior_spec=spec)
  x = jnp.zeros((1, image_size, image_size, 3))
  feats = jax.eval_shape(model.backbone.apply, jax.eval_shape(model.backbone.init,
                                                              jax.random.key(0), x), x)
  assert tuple(feats[n].shape[1] for n in spec.layer_names) == sizes
  loc, _ = jax.eval_shape(model.apply, _abstract_init(model), x)
  assert loc.shape == (1, spec.num_priors, 4)
  with pytest.raises(ValueError, match="multiple of 4"):
    models.tiny_priors(image_size + 2)
  with pytest.raises(ValueError, match="takes 300-px inputs only, not 320"):
    models.backbone_entry("ssd300_vgg16").default_priors(320)


def test_ssd_tiny_size():
  model = models.create_model("ssd_tiny", num_classes=3)
  n = _num_params(_abstract_init(model))
  assert 300_000 <= n <= 2_000_000
  assert model.image_size == 128
  assert model.prior_spec.feature_map_sizes == (16, 8, 4, 2, 1)


def test_output_order_matches_priors(tiny):
  """loc/logits rows are the raw head maps flattened layer, y, x, box (NumPy loop reference)."""
  model, variables, _ = tiny
  num_classes = model.num_classes
  spec = model.prior_spec
  apply = jax.jit(lambda v, x: model.apply(v, x, capture_intermediates=_head_filter,
                                           mutable="intermediates"))
  (loc, logits), state = apply(variables, _images(0))
  heads = jax.tree.map(np.asarray, state["intermediates"])
  ref_loc, ref_logits = [], []
  for n in range(2):
    rows_loc, rows_logits = [], []
    for layer, f, b in zip(spec.layer_names, spec.feature_map_sizes, spec.boxes_per_cell):
      raw_loc = heads[f"{layer}_mbox_loc"]["__call__"][0][n]
      raw_conf = heads[f"{layer}_mbox_conf"]["__call__"][0][n]
      for y in range(f):
        for x in range(f):
          for box in range(b):
            rows_loc.append(raw_loc[y, x, box * 4:(box + 1) * 4])
            c = num_classes + 1
            rows_logits.append(raw_conf[y, x, box * c:(box + 1) * c])
    ref_loc.append(rows_loc)
    ref_logits.append(rows_logits)
  np.testing.assert_array_equal(np.asarray(loc), np.asarray(ref_loc))
  np.testing.assert_array_equal(np.asarray(logits), np.asarray(ref_logits))
  assert loc.shape[1] == priors.generate(spec).shape[0]


def test_tiny_forward_and_gradient_are_finite(tiny):
  model, variables, _ = tiny
  images = _images(1)

  def loss_fn(params):
    loc, logits = model.apply({"params": params}, images, train=True)
    return jnp.mean(loc ** 2) + jnp.mean(jax.nn.logsumexp(logits, -1) - logits[..., 0])

  loss, grads = jax.jit(jax.value_and_grad(loss_fn))(variables["params"])
  assert np.isfinite(float(loss))
  leaves = jax.tree.leaves(grads)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
  # Every layer receives gradient (the stem and the deepest head included).
  assert all(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree.leaves(
      {k: v["kernel"] for k, v in grads["backbone"].items()}))
  assert float(jnp.max(jnp.abs(grads["p7_mbox_conf"]["kernel"]))) > 0


def test_auto_is_the_winograd_path_on_cpu(tiny):
  _, variables, _ = tiny
  images = _images(1)
  program = lambda impl: str(jax.make_jaxpr(models.create_model(
      "ssd_tiny", num_classes=3, conv_impl=impl).apply)(variables, images))
  assert jax.default_backend() == "cpu"
  assert program("auto") == program("cpu_fast") != program("xla")


def test_conv_impls_give_the_same_network(tiny):
  """The Winograd path (the fixture's ``auto`` on CPU) and XLA's convolutions give the same
  parameter tree, outputs and gradients (exact up to float32 rounding)."""
  model, variables, apply = tiny
  xla = models.create_model("ssd_tiny", num_classes=3, conv_impl="xla")
  assert jax.tree.structure(_abstract_init(xla)) == jax.tree.structure(variables)
  images = _images(4)

  def loss_fn(m, params):
    loc, logits = m.apply({"params": params}, images)
    return jnp.sum(loc * logits[..., :4])

  for out, ref in zip(apply(variables, images), jax.jit(xla.apply)(variables, images)):
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), rtol=1e-4, atol=1e-4)
  grads = [jax.jit(jax.grad(loss_fn, 1), static_argnums=0)(m, variables["params"])
           for m in (xla, model)]
  for ref, out in zip(*map(jax.tree.leaves, grads)):
    scale = float(jnp.max(jnp.abs(ref))) + 1e-6
    np.testing.assert_allclose(np.asarray(out) / scale, np.asarray(ref) / scale, atol=1e-4)


def test_input_normalization_and_integer_input(tiny):
  model, variables, apply = tiny
  images = np.random.RandomState(2).randint(0, 256, (2, 128, 128, 3)).astype(np.uint8)
  out_uint8 = jax.jit(model.apply)(variables, jnp.asarray(images))
  out_float = apply(variables, jnp.asarray(images, jnp.float32))
  np.testing.assert_array_equal(np.asarray(out_uint8[0]), np.asarray(out_float[0]))
  # The same network without normalization, fed (x - mean) / std computed in NumPy.
  mean = np.array([0.485, 0.456, 0.406]) * 255
  std = np.array([0.229, 0.224, 0.225]) * 255
  raw = model.clone(pixel_mean=(0.0, 0.0, 0.0), pixel_std=(1.0, 1.0, 1.0))
  out_raw = jax.jit(raw.apply)(variables, jnp.asarray((images - mean) / std, jnp.float32))
  np.testing.assert_allclose(np.asarray(out_float[0]), np.asarray(out_raw[0]), rtol=1e-4,
                             atol=1e-4)
  np.testing.assert_allclose(np.asarray(out_float[1]), np.asarray(out_raw[1]), rtol=1e-4,
                             atol=1e-4)


def test_bfloat16_params_float32_outputs_float32(tiny):
  model, variables, apply = tiny
  bf16 = models.create_model("ssd_tiny", num_classes=3, dtype=jnp.bfloat16)
  assert {x.dtype for x in jax.tree.leaves(_abstract_init(bf16))} == {jnp.dtype(jnp.float32)}
  images = _images(3)
  loc, logits = jax.jit(bf16.apply)(variables, images)
  assert loc.dtype == jnp.float32 and logits.dtype == jnp.float32
  ref_loc, ref_logits = apply(variables, images)
  scale = float(jnp.max(jnp.abs(ref_logits)))
  assert float(jnp.max(jnp.abs(logits - ref_logits))) < 0.1 * scale
  assert float(jnp.max(jnp.abs(loc - ref_loc))) < 0.1 * float(jnp.max(jnp.abs(ref_loc)))
  # The VGG model too (traced only).
  vgg = models.create_model("ssd300_vgg16", num_classes=20, dtype=jnp.bfloat16)
  variables, vloc, vlogits, _ = _trace_heads(vgg, batch=1)
  assert {x.dtype for x in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
  assert vloc.dtype == jnp.float32 and vlogits.dtype == jnp.float32


def _l2norm_reference(x, scale, eps=1e-10):
  out = np.zeros_like(x, dtype=np.float64)
  b, h, w, c = x.shape
  for n in range(b):
    for i in range(h):
      for j in range(w):
        norm = np.sqrt(sum(float(x[n, i, j, k]) ** 2 for k in range(c)) + eps)
        for k in range(c):
          out[n, i, j, k] = x[n, i, j, k] / norm * scale[k]
  return out


def test_l2norm_against_numpy_reference():
  rng = np.random.RandomState(4)
  x = rng.normal(0, 3, (2, 3, 4, 5)).astype(np.float32)
  x[0, 1, 2] = 0.0  # an all-zero pixel stays zero (no NaN)
  module = layers.L2Norm()
  variables = module.init(jax.random.key(0), x)
  np.testing.assert_array_equal(np.asarray(variables["params"]["scale"]), np.full(5, 20.0))
  np.testing.assert_allclose(np.asarray(module.apply(variables, x)),
                             _l2norm_reference(x, np.full(5, 20.0)), rtol=1e-5, atol=1e-6)
  scale = rng.uniform(0.5, 3, 5).astype(np.float32)
  y = module.apply({"params": {"scale": jnp.asarray(scale)}}, x)
  np.testing.assert_allclose(np.asarray(y), _l2norm_reference(x, scale), rtol=1e-5, atol=1e-6)
  # Hand case: (3, 4) has norm 5.
  hand = module.apply(variables, jnp.asarray([[[[3.0, 4.0, 0.0, 0.0, 0.0]]]]))
  np.testing.assert_allclose(np.asarray(hand)[0, 0, 0], [12.0, 16.0, 0.0, 0.0, 0.0], rtol=1e-6)
  grad = jax.grad(lambda v: jnp.sum(module.apply(variables, v)))(jnp.asarray(x))
  assert bool(jnp.all(jnp.isfinite(grad)))


def _max_pool_reference(x, window, stride, padding, ceil_mode):
  b, h, w, c = x.shape
  out_sizes = []
  for size in (h, w):
    span = size + 2 * padding - window
    out = (int(np.ceil(span / stride)) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
      out -= 1
    out_sizes.append(out)
  out = np.full((b, out_sizes[0], out_sizes[1], c), -np.inf)
  for i in range(out_sizes[0]):
    for j in range(out_sizes[1]):
      for di in range(window):
        for dj in range(window):
          y, x_ = i * stride - padding + di, j * stride - padding + dj
          if 0 <= y < h and 0 <= x_ < w:
            out[:, i, j] = np.maximum(out[:, i, j], x[:, y, x_])
  return out


@pytest.mark.parametrize("size,window,stride,padding,ceil_mode,expected_size", [
    (7, 2, 2, 0, True, 4),    # pool3 at 300: 75 -> 38, in small
    (7, 2, 2, 0, False, 3),
    (8, 2, 2, 0, True, 4),
    (5, 3, 1, 1, False, 5),   # pool5: 3x3 stride 1 pad 1 keeps the size
    (6, 3, 2, 1, True, 4),    # a last window starting in the padding is dropped (not 4+1)
])
def test_max_pool_against_numpy_reference(size, window, stride, padding, ceil_mode,
                                          expected_size):
  x = np.random.RandomState(5).normal(size=(2, size, size, 3)).astype(np.float32)
  got = np.asarray(layers.max_pool(jnp.asarray(x), window, stride, padding, ceil_mode))
  want = _max_pool_reference(x, window, stride, padding, ceil_mode)
  assert got.shape == want.shape == (2, expected_size, expected_size, 3)
  np.testing.assert_array_equal(got, want)


def _max_pool_grad_reference(x, dy, window, stride, padding):
  """Caffe's backward: each output's gradient goes to its window's first maximum (row-major)."""
  dx = np.zeros_like(x)
  for b in range(x.shape[0]):
    for c in range(x.shape[3]):
      for i in range(dy.shape[1]):
        for j in range(dy.shape[2]):
          best, where = -np.inf, None
          for di in range(window):
            for dj in range(window):
              y, x_ = i * stride - padding + di, j * stride - padding + dj
              if 0 <= y < x.shape[1] and 0 <= x_ < x.shape[2] and x[b, y, x_, c] > best:
                best, where = x[b, y, x_, c], (y, x_)
          dx[b, where[0], where[1], c] += dy[b, i, j, c]
  return dx


@pytest.mark.parametrize("size,window,stride,padding,ceil_mode", [
    (7, 2, 2, 0, True), (8, 2, 2, 0, False), (5, 3, 1, 1, False), (6, 3, 2, 1, True)])
def test_max_pool_gradient_against_numpy_reference(size, window, stride, padding, ceil_mode):
  rng = np.random.RandomState(6)
  # Values from a small set so that windows hold ties (as ReLU zeros do): the whole gradient
  # must go to the first maximum, not be split.
  x = rng.randint(0, 3, size=(2, size, size, 3)).astype(np.float32)
  pool = lambda v: layers.max_pool(v, window, stride, padding, ceil_mode)
  y, vjp = jax.vjp(pool, jnp.asarray(x))
  dy = rng.normal(size=y.shape).astype(np.float32)
  got = np.asarray(vjp(jnp.asarray(dy))[0])
  np.testing.assert_allclose(got, _max_pool_grad_reference(x, dy, window, stride, padding),
                             rtol=1e-6, atol=1e-6)
  assert np.count_nonzero(got) <= y.size  # one input per output, ties included


def test_max_pool_hand_case_gradient_goes_to_first_maximum():
  x = jnp.asarray([[5.0, 5.0], [1.0, 5.0]]).reshape(1, 2, 2, 1)
  dx = jax.grad(lambda v: jnp.sum(layers.max_pool(v, 2, 2)))(x)
  np.testing.assert_array_equal(np.asarray(dx).reshape(2, 2), [[1.0, 0.0], [0.0, 0.0]])


def test_ablation_fewer_layers_and_other_aspect_ratios_tiny():
  few = priors.from_linear_scales((16, 8), s_min=0.2, s_max=0.6, aspect_ratios=(2.0, 3.0),
                                  image_size=128, layer_names=("p3", "p4"))
  model = models.create_model("ssd_tiny", num_classes=2, prior_spec=few)
  variables, loc, logits, heads = _trace_heads(model, batch=1)
  assert few.boxes_per_cell == (6, 6)
  assert loc.shape == (1, (256 + 64) * 6, 4) and logits.shape == (1, (256 + 64) * 6, 3)
  assert sorted(heads) == ["p3_mbox_conf", "p3_mbox_loc", "p4_mbox_conf", "p4_mbox_loc"]
  assert variables["params"]["p3_mbox_loc"]["kernel"].shape == (3, 3, 64, 24)
  assert variables["params"]["p4_mbox_conf"]["kernel"].shape == (3, 3, 128, 18)
  # A deeper-only subset, out of the default order.
  deep = priors.from_linear_scales((2, 4), image_size=128, aspect_ratios=((), ()),
                                   layer_names=("p6", "p5"))
  model = models.create_model("ssd_tiny", num_classes=2, prior_spec=deep)
  _, loc, _, heads = _trace_heads(model, batch=1)
  assert loc.shape == (1, 4 * 2 + 16 * 2, 4)
  assert heads["p6_mbox_loc"]["__call__"][0].shape == (1, 2, 2, 8)


def test_ablation_ssd300_aspect_ratios_and_sources():
  # Paper Table 2: drop {1/3, 3}: 4 boxes everywhere -> 4 * (38^2 + 19^2 + 10^2 + 5^2 + 9 + 1).
  no3 = dataclasses.replace(priors.SSD300_VOC, aspect_ratios=((2,),) * 6)
  model = models.create_model("ssd300_vgg16", num_classes=20, prior_spec=no3)
  variables, loc, logits, _ = _trace_heads(model, batch=1)
  assert loc.shape == (1, 4 * 1940, 4) and logits.shape == (1, 4 * 1940, 21)
  assert variables["params"]["fc7_mbox_loc"]["kernel"].shape == (3, 3, 1024, 16)
  # Table 3: fc7 (conv7) alone.
  only_fc7 = priors.PriorSpec(image_size=300, feature_map_sizes=(19,), steps=(16,),
                              min_sizes=(60,), max_sizes=(111,), aspect_ratios=((2, 3),),
                              layer_names=("fc7",))
  model = models.create_model("ssd300_vgg16", num_classes=20, prior_spec=only_fc7)
  variables, loc, _, heads = _trace_heads(model, batch=1)
  assert loc.shape == (1, 19 * 19 * 6, 4)
  assert sorted(heads) == ["fc7_mbox_conf", "fc7_mbox_loc"]
  assert "conv4_3_mbox_loc" not in variables["params"]


def test_spec_without_layer_names_uses_default_sources():
  spec = dataclasses.replace(models.TINY_PRIORS, layer_names=None)
  model = models.create_model("ssd_tiny", num_classes=2, prior_spec=spec)
  _, loc, _, heads = _trace_heads(model, batch=1)
  assert loc.shape[1] == priors.generate(spec).shape[0]
  assert "p7_mbox_loc" in heads
  short = priors.from_linear_scales((16, 8), image_size=128)  # 2 layers, no names
  with pytest.raises(ValueError, match="layer_names"):
    _trace_heads(models.create_model("ssd_tiny", num_classes=2, prior_spec=short))


def test_bad_specs_and_inputs_raise():
  wrong_size = priors.from_linear_scales((16, 7, 4, 2, 1), image_size=128,
                                         layer_names=("p3", "p4", "p5", "p6", "p7"))
  with pytest.raises(ValueError, match=r"'p4'.*7x7.*8x8"):
    _trace_heads(models.create_model("ssd_tiny", num_classes=2, prior_spec=wrong_size))
  wrong_vgg = dataclasses.replace(priors.SSD300_VOC, feature_map_sizes=(37, 19, 10, 5, 3, 1))
  with pytest.raises(ValueError, match=r"'conv4_3'.*37x37.*38x38"):
    _trace_heads(models.create_model("ssd300_vgg16", num_classes=2, prior_spec=wrong_vgg))
  unknown = priors.from_linear_scales((16,), image_size=128, layer_names=("p9",))
  with pytest.raises(ValueError, match=r"'p9'.*available.*p3"):
    _trace_heads(models.create_model("ssd_tiny", num_classes=2, prior_spec=unknown))
  with pytest.raises(ValueError, match="unknown model 'ssd600'.*ssd300_vgg16.*ssd_tiny"):
    models.create_model("ssd600", num_classes=2)
  with pytest.raises(ValueError, match="num_classes"):
    models.create_model("ssd_tiny", num_classes=0)
  model = models.create_model("ssd_tiny", num_classes=2)
  variables = _abstract_init(model)
  with pytest.raises(ValueError, match=r"\[B, 128, 128, 3\]"):
    jax.eval_shape(model.apply, variables, jnp.zeros((1, 96, 96, 3)))
  with pytest.raises(ValueError, match="conv impl"):
    _abstract_init(models.create_model("ssd_tiny", num_classes=2, conv_impl="cudnn"))
