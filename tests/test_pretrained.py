"""Tests for ssd_jax.pretrained: VGG16 -> SSD backbone conversion, without any download.

Convolutions of the converted (HWIO) kernels are compared with loop-based NumPy convolutions of
the original PyTorch (OIHW) tensors; the subsampled fc6/fc7 against the paper's definition on the
original fully connected weights.
"""

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssd_jax import models
from ssd_jax import pretrained

# torchvision vgg16().features conv indices and their SSD names.
_CONVS = [(0, "conv1_1"), (2, "conv1_2"), (5, "conv2_1"), (7, "conv2_2"), (10, "conv3_1"),
          (12, "conv3_2"), (14, "conv3_3"), (17, "conv4_1"), (19, "conv4_2"), (21, "conv4_3"),
          (24, "conv5_1"), (26, "conv5_2"), (28, "conv5_3")]
_REAL_WIDTHS = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]


def _vgg_state_dict(rng, widths, fc6_out, fc7_out, reduced=False):
  """A random VGG16-layout state dict; narrow ``widths`` keep it small."""
  sd, cin = {}, 3
  prefix = "" if reduced else "features."
  for (index, _), cout in zip(_CONVS, widths):
    sd[f"{prefix}{index}.weight"] = rng.normal(size=(cout, cin, 3, 3)).astype(np.float32)
    sd[f"{prefix}{index}.bias"] = rng.normal(size=(cout,)).astype(np.float32)
    cin = cout
  if reduced:
    sd["31.weight"] = rng.normal(size=(fc6_out, cin, 3, 3)).astype(np.float32)
    sd["31.bias"] = rng.normal(size=(fc6_out,)).astype(np.float32)
    sd["33.weight"] = rng.normal(size=(fc7_out, fc6_out, 1, 1)).astype(np.float32)
    sd["33.bias"] = rng.normal(size=(fc7_out,)).astype(np.float32)
  else:
    sd["classifier.0.weight"] = rng.normal(size=(fc6_out, cin * 49)).astype(np.float32)
    sd["classifier.0.bias"] = rng.normal(size=(fc6_out,)).astype(np.float32)
    sd["classifier.3.weight"] = rng.normal(size=(fc7_out, fc6_out)).astype(np.float32)
    sd["classifier.3.bias"] = rng.normal(size=(fc7_out,)).astype(np.float32)
    sd["classifier.6.weight"] = rng.normal(size=(5, fc7_out)).astype(np.float32)  # fc8: unused
    sd["classifier.6.bias"] = rng.normal(size=(5,)).astype(np.float32)
  return sd


def _conv_reference(x_nchw, w_oihw, b, padding, dilation=1):
  """Plain NumPy convolution (cross-correlation, as PyTorch), one kernel tap at a time."""
  n, cin, h, w = x_nchw.shape
  cout, _, kh, kw = w_oihw.shape
  xp = np.pad(x_nchw.astype(np.float64), ((0, 0), (0, 0), (padding, padding), (padding, padding)))
  oh, ow = h + 2 * padding - dilation * (kh - 1), w + 2 * padding - dilation * (kw - 1)
  out = np.zeros((n, cout, oh, ow)) + b[None, :, None, None]
  for o in range(cout):
    for i in range(kh):
      for j in range(kw):
        patch = xp[:, :, i * dilation:i * dilation + oh, j * dilation:j * dilation + ow]
        out[:, o] += np.einsum("nchw,c->nhw", patch, w_oihw[o, :, i, j])
  return out


def _conv_hwio(x_nchw, kernel_hwio, bias, padding, dilation=1):
  """The converted weights used the way the Flax model uses them (NHWC, HWIO)."""
  y = jax.lax.conv_general_dilated(
      jnp.asarray(x_nchw.transpose(0, 2, 3, 1)), jnp.asarray(kernel_hwio), (1, 1),
      ((padding, padding), (padding, padding)), rhs_dilation=(dilation, dilation),
      dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=jax.lax.Precision.HIGHEST)
  return np.asarray(y + bias).transpose(0, 3, 1, 2)


def _fc6_reference(x_nchw, fc6_weight, fc6_bias):
  """SSD's fc6 from the original [F, C * 7 * 7] weights, following the paper's definition.

  Output channel ``o`` is original unit ``4 o``; its tap ``(i, j)`` of a 3x3 window dilated by 6
  is the original 7x7 tap ``(3 i, 3 j)``.
  """
  n, c, h, w = x_nchw.shape
  full = fc6_weight.reshape(fc6_weight.shape[0], c, 7, 7)
  xp = np.pad(x_nchw.astype(np.float64), ((0, 0), (0, 0), (6, 6), (6, 6)))
  out = np.zeros((n, fc6_weight.shape[0] // 4, h, w))
  for o in range(out.shape[1]):
    out[:, o] = fc6_bias[4 * o]
    for i in range(3):
      for j in range(3):
        for ch in range(c):
          out[:, o] += full[4 * o, ch, 3 * i, 3 * j] * xp[:, ch, 6 * i:6 * i + h, 6 * j:6 * j + w]
  return out


def _fc7_reference(x_nchw, fc7_weight, fc7_bias):
  n, c, h, w = x_nchw.shape
  out = np.zeros((n, fc7_weight.shape[0] // 4, h, w))
  for o in range(out.shape[1]):
    out[:, o] = fc7_bias[4 * o]
    for ch in range(c):
      out[:, o] += fc7_weight[4 * o, 4 * ch] * x_nchw[:, ch]
  return out


def test_converted_layers_match_reference_convolutions(tmp_path):
  rng = np.random.default_rng(0)
  widths = [4, 4, 5, 5, 6, 6, 6, 7, 7, 7, 8, 8, 8]
  sd = _vgg_state_dict(rng, widths, fc6_out=24, fc7_out=20)
  path = tmp_path / "vgg16.npz"
  np.savez(path, **sd)
  params = pretrained.convert_vgg16(pretrained.read_state_dict(path))
  assert sorted(params) == sorted([name for _, name in _CONVS] + ["fc6", "fc7"])

  cin = 3
  for (index, name), cout in zip(_CONVS, widths):
    x = rng.normal(size=(2, cin, 5, 6))
    got = _conv_hwio(x, params[name]["kernel"], params[name]["bias"], padding=1)
    want = _conv_reference(x, sd[f"features.{index}.weight"], sd[f"features.{index}.bias"], 1)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=name)
    assert params[name]["kernel"].dtype == np.float32
    cin = cout

  assert params["fc6"]["kernel"].shape == (3, 3, 8, 6)
  x = rng.normal(size=(2, 8, 9, 8))  # larger than the dilation so the padding matters
  got = _conv_hwio(x, params["fc6"]["kernel"], params["fc6"]["bias"], padding=6, dilation=6)
  want = _fc6_reference(x, sd["classifier.0.weight"], sd["classifier.0.bias"])
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)

  assert params["fc7"]["kernel"].shape == (1, 1, 6, 5)
  x = rng.normal(size=(2, 6, 3, 4))
  got = _conv_hwio(x, params["fc7"]["kernel"], params["fc7"]["bias"], padding=0)
  want = _fc7_reference(x, sd["classifier.3.weight"], sd["classifier.3.bias"])
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_fc6_hand_computed_taps():
  """One hand-placed weight: original unit 8, channel 1, tap (row 6, col 3) -> out 2, (2, 1)."""
  widths = [1] * 12 + [2]
  sd = _vgg_state_dict(np.random.default_rng(1), widths, fc6_out=12, fc7_out=8)
  fc6 = np.zeros((12, 2, 7, 7), np.float32)
  fc6[8, 1, 6, 3] = 5.0
  fc6[9, 1, 6, 3] = 7.0  # not a multiple of 4: dropped
  fc6[8, 1, 5, 3] = 9.0  # row 5 is not a kept tap: dropped
  sd["classifier.0.weight"] = fc6.reshape(12, 98)
  kernel = pretrained.convert_vgg16(sd)["fc6"]["kernel"]
  expected = np.zeros((3, 3, 2, 3), np.float32)
  expected[2, 1, 1, 2] = 5.0
  np.testing.assert_array_equal(kernel, expected)


def test_bgr_flag_flips_first_conv_inputs():
  rng = np.random.default_rng(2)
  sd = _vgg_state_dict(rng, [3] * 13, fc6_out=4, fc7_out=4)
  rgb = pretrained.convert_vgg16(sd)
  bgr = pretrained.convert_vgg16(sd, bgr=True)
  x_rgb = rng.normal(size=(1, 3, 4, 4))
  # BGR weights fed BGR images == flipped weights fed the same images in RGB order.
  want = _conv_hwio(x_rgb[:, ::-1], rgb["conv1_1"]["kernel"], rgb["conv1_1"]["bias"], 1)
  got = _conv_hwio(x_rgb, bgr["conv1_1"]["kernel"], bgr["conv1_1"]["bias"], 1)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(rgb["conv1_2"]["kernel"], bgr["conv1_2"]["kernel"])


def test_reduced_ssd_pytorch_layout():
  rng = np.random.default_rng(3)
  sd = _vgg_state_dict(rng, [2] * 13, fc6_out=6, fc7_out=6, reduced=True)
  params = pretrained.convert_vgg16(sd)
  x = rng.normal(size=(1, 2, 13, 13))
  got = _conv_hwio(x, params["fc6"]["kernel"], params["fc6"]["bias"], padding=6, dilation=6)
  want = _conv_reference(x, sd["31.weight"], sd["31.bias"], padding=6, dilation=6)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  x = rng.normal(size=(1, 2, 3, 3))
  got = _conv_hwio(x, params["conv2_1"]["kernel"], params["conv2_1"]["bias"], padding=1)
  want = _conv_reference(x, sd["5.weight"], sd["5.bias"], padding=1)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  assert params["fc7"]["kernel"].shape == (1, 1, 6, 6)


def _lazy_matrix(rng, rows, cols):
  """A [rows, cols] float32 matrix with value base[r + c]: real shapes in O(rows + cols) memory."""
  base = rng.normal(size=rows + cols - 1).astype(np.float32)
  return np.lib.stride_tricks.sliding_window_view(base, cols)


def test_load_into_ssd300_variables_real_shapes():
  model = models.create_model("ssd300_vgg16", num_classes=20)
  abstract = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 300, 300, 3)))
  variables = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), abstract)
  rng = np.random.default_rng(4)
  sd = _vgg_state_dict(rng, _REAL_WIDTHS, fc6_out=1, fc7_out=1)  # fc replaced below
  sd["classifier.0.weight"] = _lazy_matrix(rng, 4096, 512 * 49)
  sd["classifier.0.bias"] = rng.normal(size=4096).astype(np.float32)
  sd["classifier.3.weight"] = _lazy_matrix(rng, 4096, 4096)
  sd["classifier.3.bias"] = rng.normal(size=4096).astype(np.float32)
  loaded = pretrained.load_vgg16_backbone(sd, variables)

  backbone = loaded["params"]["backbone"]
  for index, name in _CONVS:
    w = sd[f"features.{index}.weight"]
    kernel = np.asarray(backbone[name]["kernel"])
    # HWIO element [i, j, c, o] is OIHW element [o, c, i, j].
    np.testing.assert_array_equal(kernel[1, 2], w[:, :, 1, 2].T, err_msg=name)
    np.testing.assert_array_equal(kernel[0, 0, :, -1], w[-1, :, 0, 0], err_msg=name)
    np.testing.assert_array_equal(np.asarray(backbone[name]["bias"]),
                                  sd[f"features.{index}.bias"])
  fc6 = np.asarray(backbone["fc6"]["kernel"])
  assert fc6.shape == (3, 3, 512, 1024) and fc6.dtype == np.float32
  o, c, i, j = 777, 300, 2, 1  # unit 4 * 777, flat input index c * 49 + 7 * (3 i) + 3 j
  assert fc6[i, j, c, o] == sd["classifier.0.weight"][4 * o, c * 49 + 7 * 3 * i + 3 * j]
  np.testing.assert_array_equal(np.asarray(backbone["fc6"]["bias"]),
                                sd["classifier.0.bias"][::4])
  fc7 = np.asarray(backbone["fc7"]["kernel"])
  assert fc7.shape == (1, 1, 1024, 1024)
  assert fc7[0, 0, 10, 1000] == sd["classifier.3.weight"][4000, 40]
  # Everything else is untouched; the input tree is not modified.
  np.testing.assert_array_equal(np.asarray(loaded["params"]["backbone"]["conv4_3_norm"]["scale"]),
                                variables["params"]["backbone"]["conv4_3_norm"]["scale"])
  assert loaded["params"]["conv4_3_mbox_loc"] is variables["params"]["conv4_3_mbox_loc"]
  assert not np.any(variables["params"]["backbone"]["conv1_1"]["kernel"])


def test_shape_mismatch_and_bad_inputs_raise(tmp_path):
  model = models.create_model("ssd300_vgg16", num_classes=20)
  abstract = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 300, 300, 3)))
  narrow = _vgg_state_dict(np.random.default_rng(5), [4] * 13, fc6_out=8, fc7_out=8)
  with pytest.raises(ValueError, match=r"conv1_1/kernel.*\(3, 3, 3, 4\).*\(3, 3, 3, 64\)"):
    pretrained.load_vgg16_backbone(narrow, abstract)
  tiny = models.create_model("ssd_tiny", num_classes=2)
  tiny_vars = jax.eval_shape(tiny.init, jax.random.key(0), jnp.zeros((1, 128, 128, 3)))
  with pytest.raises(ValueError, match="params/backbone/conv1_1"):
    pretrained.load_vgg16_backbone(narrow, tiny_vars)
  with pytest.raises(ValueError, match="not a VGG16 state dict"):
    pretrained.convert_vgg16({"conv.weight": np.zeros((1, 1, 1, 1))})
  bad_fc6 = dict(narrow, **{"classifier.0.weight": np.zeros((8, 4 * 48), np.float32)})
  with pytest.raises(ValueError, match="fc6"):
    pretrained.convert_vgg16(bad_fc6)
  with pytest.raises(ValueError, match="unsupported"):
    (tmp_path / "w.h5").write_bytes(b"")
    pretrained.read_state_dict(tmp_path / "w.h5")


def test_missing_fc_weights_keep_initialization():
  sd = _vgg_state_dict(np.random.default_rng(6), [2] * 13, fc6_out=4, fc7_out=4)
  convs_only = {k: v for k, v in sd.items() if k.startswith("features.")}
  params = pretrained.convert_vgg16(convs_only)
  assert "fc6" not in params and "fc7" not in params and "conv5_3" in params


def test_missing_file_says_where_to_get_weights(tmp_path):
  with pytest.raises(FileNotFoundError) as info:
    pretrained.read_state_dict(tmp_path / "vgg16.npz")
  message = str(info.value)
  assert "VGG16_Weights.IMAGENET1K_V1" in message and pretrained.VGG16_URL in message
  assert "np.savez" in message
  with pytest.raises(FileNotFoundError):
    pretrained.load_vgg16_backbone(str(tmp_path / "missing.pth"), {"params": {}})


@pytest.mark.parametrize("ext,module", [(".safetensors", "safetensors"), (".pth", "torch")])
def test_optional_readers_explain_missing_packages(tmp_path, ext, module):
  if importlib.util.find_spec(module) is not None:
    pytest.skip(f"{module} is installed; this checks the message when it is not")
  path = tmp_path / f"vgg16{ext}"
  path.write_bytes(b"\0")
  with pytest.raises(ImportError, match=module):
    pretrained.read_state_dict(path)


def test_pth_reads_like_npz(tmp_path):
  """torchvision's own format (a ``torch.save`` state dict) gives the arrays the ``.npz`` does."""
  torch = pytest.importorskip("torch")
  sd = _vgg_state_dict(np.random.default_rng(7), [4] * 13, fc6_out=8, fc7_out=8)
  torch.save({k: torch.from_numpy(v) for k, v in sd.items()}, tmp_path / "vgg16.pth")
  np.savez(tmp_path / "vgg16.npz", **sd)
  from_pth = pretrained.read_state_dict(tmp_path / "vgg16.pth")
  from_npz = pretrained.read_state_dict(tmp_path / "vgg16.npz")
  assert sorted(from_pth) == sorted(from_npz)
  for key, value in from_npz.items():
    np.testing.assert_array_equal(np.asarray(from_pth[key]), value, err_msg=key)
