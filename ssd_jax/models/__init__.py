"""Flax SSD networks: VGG16-reduced SSD300/SSD512 and the small ``ssd_tiny``.

``create_model(name, num_classes)`` returns an :class:`SSD` Linen module; use it as
``variables = model.init(rng, images)`` and ``loc, logits = model.apply(variables, images)`` with
``images`` ``[B, S, S, 3]`` RGB in [0, 255], ``S = model.image_size``. The variables hold only a
``params`` collection (no batch norm).
"""

import dataclasses
from typing import Any, Callable, Optional

import jax.numpy as jnp

from ssd_jax import pretrained
from ssd_jax import priors as priors_lib
from ssd_jax.models.layers import CONV_IMPLS, L2Norm
from ssd_jax.models.ssd import SSD
from ssd_jax.models.tiny import TINY_PRIORS, TinyBackbone, tiny_priors
from ssd_jax.models.vgg import VGG16Backbone
# Re-exported for users: the normalizations to give SSD's pixel_mean / pixel_std.
from ssd_jax.pixel_stats import CAFFE_MEAN, CAFFE_STD, IMAGENET_MEAN, IMAGENET_STD


@dataclasses.dataclass(frozen=True)
class BackboneEntry:
  """What the rest of the code base knows of a model: nothing else is model-specific.

  Attributes:
    backbone: ``(dtype=..., conv_impl=...) -> nn.Module`` giving the named source maps.
    priors: the default-box layout (and so the input size) the model is built for.
    load_pretrained: ``(weights path, variables) -> variables`` with ImageNet weights in the
      backbone (see :mod:`ssd_jax.pretrained`), or None when there are none to load.
    priors_at: ``image_size -> PriorSpec``, the default layout for another input side (the
      backbone is fully convolutional and its maps follow the input), or None when the model is
      built for one input size only (SSD300, SSD512).
  """
  backbone: Callable[..., Any]
  priors: priors_lib.PriorSpec
  load_pretrained: Optional[Callable[[str, Any], Any]] = None
  priors_at: Optional[Callable[[int], priors_lib.PriorSpec]] = None

  def default_priors(self, image_size: Optional[int] = None) -> priors_lib.PriorSpec:
    """The default layout, for the input side ``image_size`` (None = the model's own)."""
    if image_size is None or image_size == self.priors.image_size:
      return self.priors
    if self.priors_at is None:
      raise ValueError(f"this model takes {int(self.priors.image_size)}-px inputs only, not "
                       f"{image_size} (models with a free input size: "
                       f"{[n for n, e in BACKBONES.items() if e.priors_at]})")
    return self.priors_at(int(image_size))


def _vgg16(variant: str) -> Callable[..., VGG16Backbone]:
  return lambda **kw: VGG16Backbone(variant=variant, **kw)


BACKBONES: dict[str, BackboneEntry] = {
    "ssd300_vgg16": BackboneEntry(_vgg16("ssd300"), priors_lib.SSD300_VOC,
                                  pretrained.load_vgg16_backbone),
    "ssd512_vgg16": BackboneEntry(_vgg16("ssd512"), priors_lib.SSD512_VOC,
                                  pretrained.load_vgg16_backbone),
    "ssd_tiny": BackboneEntry(TinyBackbone, TINY_PRIORS, priors_at=tiny_priors),
}
MODEL_NAMES = tuple(BACKBONES)


def backbone_entry(name: str) -> BackboneEntry:
  if name not in BACKBONES:
    raise ValueError(f"unknown model {name!r}; valid names: {MODEL_NAMES}")
  return BACKBONES[name]


def create_model(name: str, num_classes: int, dtype: Any = jnp.float32,
                 prior_spec: Optional[priors_lib.PriorSpec] = None,
                 conv_impl: str = "auto") -> SSD:
  """Builds an SSD network by name.

  Args:
    name: one of :data:`MODEL_NAMES`.
    num_classes: number of object classes C; the logits have C + 1 channels (0 = background).
    dtype: computation dtype (params and outputs stay float32).
    prior_spec: default-box layout; defaults to the entry's (``priors.SSD300_VOC`` /
      ``SSD512_VOC`` / ``TINY_PRIORS``). Another spec may drop source layers (by
      ``layer_names``) or change the aspect ratios (the heads follow ``boxes_per_cell``); its
      feature map sizes must match the backbone's, which is checked when the model is traced.
    conv_impl: convolution implementation, one of :data:`CONV_IMPLS`; ``'auto'`` is the
      Winograd path on CPU (the fastest there, ``benchmarks/RESULTS.md``) and XLA's elsewhere.
  """
  entry = backbone_entry(name)
  if num_classes < 1:
    raise ValueError(f"num_classes must be >= 1 (background excluded), got {num_classes}")
  return SSD(backbone=entry.backbone(dtype=dtype, conv_impl=conv_impl), num_classes=num_classes,
             prior_spec=prior_spec if prior_spec is not None else entry.priors, dtype=dtype,
             conv_impl=conv_impl)


__all__ = ["BACKBONES", "BackboneEntry", "CAFFE_MEAN", "CAFFE_STD", "CONV_IMPLS",
           "IMAGENET_MEAN", "IMAGENET_STD", "L2Norm", "MODEL_NAMES", "SSD", "TINY_PRIORS",
           "TinyBackbone", "VGG16Backbone", "backbone_entry", "create_model", "tiny_priors"]
