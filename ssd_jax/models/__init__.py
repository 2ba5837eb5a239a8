"""Flax SSD networks: VGG16-reduced SSD300/SSD512 and the small ``ssd_tiny``.

``create_model(name, num_classes)`` returns an :class:`SSD` Linen module; use it as
``variables = model.init(rng, images)`` and ``loc, logits = model.apply(variables, images)`` with
``images`` ``[B, S, S, 3]`` RGB in [0, 255], ``S = model.image_size``. The variables hold only a
``params`` collection (no batch norm).
"""

from typing import Any, Optional

import jax.numpy as jnp

from ssd_jax import priors
from ssd_jax.models.layers import CONV_IMPLS, L2Norm
from ssd_jax.models.ssd import CAFFE_MEAN, CAFFE_STD, IMAGENET_MEAN, IMAGENET_STD, SSD
from ssd_jax.models.tiny import TINY_PRIORS, TinyBackbone
from ssd_jax.models.vgg import VGG16Backbone

# name -> (backbone factory, default prior spec)
_MODELS = {
    "ssd300_vgg16": (lambda **kw: VGG16Backbone(variant="ssd300", **kw), priors.SSD300_VOC),
    "ssd512_vgg16": (lambda **kw: VGG16Backbone(variant="ssd512", **kw), priors.SSD512_VOC),
    "ssd_tiny": (TinyBackbone, TINY_PRIORS),
}
MODEL_NAMES = tuple(_MODELS)


def create_model(name: str, num_classes: int, dtype: Any = jnp.float32,
                 prior_spec: Optional[priors.PriorSpec] = None, conv_impl: str = "xla") -> SSD:
  """Builds an SSD network by name.

  Args:
    name: one of :data:`MODEL_NAMES`.
    num_classes: number of object classes C; the logits have C + 1 channels (0 = background).
    dtype: computation dtype (params and outputs stay float32).
    prior_spec: default-box layout; defaults to ``priors.SSD300_VOC`` / ``SSD512_VOC`` /
      ``TINY_PRIORS``. Another spec may drop source layers (by ``layer_names``) or change the
      aspect ratios (the heads follow ``boxes_per_cell``); its feature map sizes must match the
      backbone's, which is checked when the model is traced.
    conv_impl: convolution implementation, one of :data:`CONV_IMPLS`.
  """
  if name not in _MODELS:
    raise ValueError(f"unknown model {name!r}; valid names: {MODEL_NAMES}")
  if num_classes < 1:
    raise ValueError(f"num_classes must be >= 1 (background excluded), got {num_classes}")
  backbone_fn, default_spec = _MODELS[name]
  return SSD(backbone=backbone_fn(dtype=dtype, conv_impl=conv_impl), num_classes=num_classes,
             prior_spec=prior_spec if prior_spec is not None else default_spec, dtype=dtype,
             conv_impl=conv_impl)


__all__ = ["CAFFE_MEAN", "CAFFE_STD", "CONV_IMPLS", "IMAGENET_MEAN", "IMAGENET_STD", "L2Norm",
           "MODEL_NAMES", "SSD", "TINY_PRIORS", "TinyBackbone", "VGG16Backbone", "create_model"]
