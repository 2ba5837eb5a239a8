"""ImageNet VGG16 weights for the SSD300/SSD512 backbone.

SSD starts from VGG16 trained on ImageNet, with the fully connected fc6/fc7 turned into
convolutions and subsampled (Liu et al. Sec. 3, as DeepLab-LargeFOV did):

* fc6 ``[4096, 512 * 7 * 7]`` -> ``[4096, 512, 7, 7]`` -> every 4th output channel and every 3rd
  spatial tap (rows/columns 0, 3, 6) -> ``[1024, 512, 3, 3]``, applied with dilation 6 (the taps
  were 3 pool5 cells apart, and pool5 now has stride 1 instead of 2);
* fc7 ``[4096, 4096]`` -> every 4th output and input -> a 1x1 conv ``[1024, 1024]``.

Supported inputs (auto-detected by key names):

* torchvision ``vgg16`` state dicts (``VGG16_Weights.IMAGENET1K_V1``; keys ``features.N.weight``
  for the 13 convs and ``classifier.0`` / ``classifier.3`` for fc6 / fc7), as ``.pth`` (read
  with torch, only if it is installed), ``.npz`` or ``.safetensors`` (only if ``safetensors`` is
  installed), or an in-memory mapping of the same arrays. These weights expect RGB input
  normalized with the ImageNet mean/std, which is the models' default normalization.
* the already reduced layout of ssd.pytorch's ``vgg16_reducedfc.pth`` (keys ``N.weight``,
  ``31`` = fc6 ``[1024, 512, 3, 3]``, ``33`` = fc7 ``[1024, 1024, 1, 1]``). Those weights come
  from Caffe: BGR input with the mean (104, 117, 123) subtracted and no scaling. Use
  ``bgr=True`` (flips conv1_1's input channels so RGB images can be fed) together with
  ``model.clone(pixel_mean=pixel_stats.CAFFE_MEAN, pixel_std=pixel_stats.CAFFE_STD)``
  (:mod:`ssd_jax.pixel_stats`, re-exported by ``ssd_jax.models``). The same holds for any
  Caffe-trained weights renamed to the torchvision keys.

Layouts: PyTorch OIHW kernels become Flax HWIO. Only the backbone's conv1_1 .. fc7 are replaced;
the L2Norm scale, the extra layers and the heads keep their initialization.
"""

import logging
import os
from collections.abc import Mapping
from typing import Any, Union

import jax.numpy as jnp
import numpy as np

VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"

# Index in torchvision's `vgg16().features` (and in ssd.pytorch's `vgg` list) of each conv.
_CONV_INDEX = {
    "conv1_1": 0, "conv1_2": 2, "conv2_1": 5, "conv2_2": 7, "conv3_1": 10, "conv3_2": 12,
    "conv3_3": 14, "conv4_1": 17, "conv4_2": 19, "conv4_3": 21, "conv5_1": 24, "conv5_2": 26,
    "conv5_3": 28,
}
_FC_SUBSAMPLE = 4   # keep every 4th fc6 / fc7 channel: 4096 -> 1024
_FC6_TAP_STEP = 3   # keep taps 0, 3, 6 of fc6's 7x7 window

_MISSING_HINT = (
    "No downloads happen here. Get torchvision's VGG16_Weights.IMAGENET1K_V1 ({url}) on a "
    "machine with internet and either pass the .pth (needs torch) or convert it once: "
    "python -c \"import torch, numpy as np; sd = torch.load('vgg16-397923af.pth'); "
    "np.savez('vgg16.npz', **{{k: v.numpy() for k, v in sd.items()}})\"").format(url=VGG16_URL)

StateDict = Mapping[str, Any]


def read_state_dict(path: Union[str, os.PathLike]) -> StateDict:
  """Reads a VGG16 state dict (``.npz``, ``.safetensors`` or torch ``.pth``/``.pt``).

  ``.npz`` files are returned as a lazy ``NpzFile``: each array is read when accessed, so the
  unused classifier.6 (fc8) is never read.

  Raises:
    FileNotFoundError: ``path`` does not exist (with where to get the weights).
    ImportError: ``.pth`` without torch or ``.safetensors`` without safetensors installed.
    ValueError: an unknown file extension.
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"VGG16 weights not found at {path!r}. {_MISSING_HINT}")
  ext = os.path.splitext(path)[1].lower()
  if ext == ".npz":
    return np.load(path)
  if ext == ".safetensors":
    try:
      from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise ImportError(f"reading {path!r} needs the optional `safetensors` package "
                        "(pip install safetensors), or convert the weights to .npz") from e
    return load_file(path)
  if ext in (".pth", ".pt"):
    try:
      import torch  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise ImportError(f"reading {path!r} needs torch, which is optional here; convert the "
                        f"state dict to .npz where torch is installed. {_MISSING_HINT}") from e
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v.numpy() for k, v in state.items()}
  raise ValueError(f"unsupported weights file {path!r}: expected .npz, .safetensors or .pth")


def _get(state_dict: StateDict, key: str, ndim: int) -> np.ndarray:
  if key not in state_dict:
    raise ValueError(f"VGG16 state dict lacks {key!r}")
  value = np.asarray(state_dict[key])
  if value.ndim != ndim:
    raise ValueError(f"VGG16 state dict entry {key!r} has shape {value.shape}, expected "
                     f"{ndim} dimensions")
  return value


def _oihw_to_hwio(w: np.ndarray) -> np.ndarray:
  return np.ascontiguousarray(w.transpose(2, 3, 1, 0), dtype=np.float32)


def convert_vgg16(state_dict: StateDict, bgr: bool = False) -> dict[str, dict[str, np.ndarray]]:
  """Converts VGG16 weights into the SSD backbone's ``{layer: {"kernel", "bias"}}`` params.

  Shape-generic (any channel widths), so that tests can use narrow VGG16-like dicts.

  Args:
    state_dict: torchvision keys (``features.N.*``, ``classifier.{0,3}.*``) or the reduced
      ssd.pytorch keys (``N.*``, fc6 = ``31``, fc7 = ``33``). Without fc weights only the 13
      convs are converted (with a warning) and fc6/fc7 keep their initialization.
    bgr: the weights expect BGR input; flip conv1_1's input channels so they take RGB.

  Returns:
    ``{"conv1_1": {"kernel": [3, 3, in, out], "bias": [out]}, ..., "fc6": ..., "fc7": ...}``
    float32 NumPy arrays; fc6 has kernel ``[3, 3, C, F6 / 4]`` (use with dilation 6), fc7
    ``[1, 1, F6 / 4, F7 / 4]``.
  """
  if "features.0.weight" in state_dict:
    prefix, fc6_key, fc7_key, reduced = "features.", "classifier.0", "classifier.3", False
  elif "0.weight" in state_dict:
    prefix, fc6_key, fc7_key, reduced = "", "31", "33", True
  else:
    raise ValueError("not a VGG16 state dict: expected torchvision keys 'features.0.weight', "
                     f"... or ssd.pytorch keys '0.weight', ...; got {sorted(state_dict)[:6]}")
  out = {}
  for name, index in _CONV_INDEX.items():
    out[name] = {"kernel": _oihw_to_hwio(_get(state_dict, f"{prefix}{index}.weight", 4)),
                 "bias": np.asarray(_get(state_dict, f"{prefix}{index}.bias", 1), np.float32)}
  if bgr:
    out["conv1_1"]["kernel"] = np.ascontiguousarray(out["conv1_1"]["kernel"][:, :, ::-1, :])

  if f"{fc6_key}.weight" not in state_dict:
    logging.warning("VGG16 state dict has no %s.weight (fc6): fc6/fc7 keep their "
                    "initialization", fc6_key)
    return out
  if reduced:
    fc6 = _get(state_dict, f"{fc6_key}.weight", 4)
    fc7 = _get(state_dict, f"{fc7_key}.weight", 4)
    fc6_bias = _get(state_dict, f"{fc6_key}.bias", 1)
    fc7_bias = _get(state_dict, f"{fc7_key}.bias", 1)
  else:
    in_channels = out["conv5_3"]["kernel"].shape[-1]
    fc6 = _get(state_dict, f"{fc6_key}.weight", 2)
    if fc6.shape[1] != in_channels * 49 or fc6.shape[0] % _FC_SUBSAMPLE:
      raise ValueError(f"{fc6_key}.weight (fc6) has shape {fc6.shape}; expected "
                       f"[4k, {in_channels} * 7 * 7]")
    # Views only: the skipped 15/16 of fc6 are never copied.
    fc6 = fc6.reshape(fc6.shape[0], in_channels, 7, 7)[
        ::_FC_SUBSAMPLE, :, ::_FC6_TAP_STEP, ::_FC6_TAP_STEP]
    fc7 = _get(state_dict, f"{fc7_key}.weight", 2)
    if fc7.shape[1] != fc6.shape[0] * _FC_SUBSAMPLE or fc7.shape[0] % _FC_SUBSAMPLE:
      raise ValueError(f"{fc7_key}.weight (fc7) has shape {fc7.shape}; expected "
                       f"[4k, {fc6.shape[0] * _FC_SUBSAMPLE}]")
    fc7 = fc7[::_FC_SUBSAMPLE, ::_FC_SUBSAMPLE, None, None]
    fc6_bias = _get(state_dict, f"{fc6_key}.bias", 1)[::_FC_SUBSAMPLE]
    fc7_bias = _get(state_dict, f"{fc7_key}.bias", 1)[::_FC_SUBSAMPLE]
  out["fc6"] = {"kernel": _oihw_to_hwio(fc6), "bias": np.asarray(fc6_bias, np.float32)}
  out["fc7"] = {"kernel": _oihw_to_hwio(fc7), "bias": np.asarray(fc7_bias, np.float32)}
  return out


def load_vgg16_backbone(weights: Union[str, os.PathLike, StateDict], variables: Mapping[str, Any],
                        bgr: bool = False) -> dict[str, Any]:
  """Returns ``variables`` with the backbone's conv1_1 .. fc7 replaced by ImageNet VGG16 weights.

  Args:
    weights: a file path (see :func:`read_state_dict`) or an in-memory state dict.
    variables: variables of an ``ssd300_vgg16`` / ``ssd512_vgg16`` model (from ``model.init``),
      holding ``params/backbone/conv1_1/kernel`` etc. Not modified.
    bgr: see :func:`convert_vgg16`.

  Raises:
    FileNotFoundError: a missing file (with where to get one).
    ValueError: the variables have no VGG16 backbone or a converted shape differs from the
      model's, naming the layer.
  """
  state_dict = weights if isinstance(weights, Mapping) else read_state_dict(weights)
  converted = convert_vgg16(state_dict, bgr=bgr)
  backbone = variables.get("params", {}).get("backbone", {})
  new_backbone = dict(backbone)
  for name, leaves in converted.items():
    if name not in backbone:
      raise ValueError(f"variables have no params/backbone/{name}; load_vgg16_backbone needs "
                       "an ssd300_vgg16 or ssd512_vgg16 model")
    layer = dict(backbone[name])
    for key, value in leaves.items():
      target = layer[key]
      if value.shape != tuple(target.shape):
        raise ValueError(f"VGG16 {name}/{key}: weights give shape {value.shape}, the model has "
                         f"{tuple(target.shape)}")
      layer[key] = jnp.asarray(value, dtype=target.dtype)
    new_backbone[name] = layer
  return {**variables, "params": {**variables["params"], "backbone": new_backbone}}
