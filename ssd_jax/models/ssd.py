"""The SSD detector: input normalization, a backbone's source maps and the multibox heads.

Each source feature map ``k`` gets two 3x3 convs predicting, per cell, ``boxes_per_cell[k]``
box offsets (4 each) and class logits (``num_classes + 1`` each, index 0 = background). Their
outputs are reshaped ``[B, h, w, boxes, .]`` and flattened row-major, then concatenated over the
layers in prior-spec order, which is exactly the order of :func:`ssd_jax.priors.generate`.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssd_jax import pixel_stats
from ssd_jax import priors
from ssd_jax.models import layers

Array = jax.Array


class SSD(nn.Module):
  """Single Shot MultiBox Detector.

  Attributes:
    backbone: a module mapping normalized ``[B, H, W, 3]`` images to a dict of named feature
      maps, with a ``source_names`` property giving the default sources in order.
    num_classes: number of object classes C (background excluded).
    prior_spec: the default-box layout; its ``layer_names`` pick the backbone maps (the
      backbone's ``source_names`` when None), its ``boxes_per_cell`` size the heads.
    dtype: computation dtype (e.g. ``jnp.bfloat16``); params, L2Norm and outputs are float32.
    conv_impl: see :func:`ssd_jax.models.layers.conv` (the backbone has its own field).
    pixel_mean, pixel_std: RGB normalization of the [0, 255] input, ``(x - mean) / std``;
      torchvision's ImageNet statistics by default, :mod:`ssd_jax.pixel_stats` has Caffe's.
  """
  backbone: nn.Module
  num_classes: int
  prior_spec: priors.PriorSpec
  dtype: Any = jnp.float32
  conv_impl: str = "xla"
  pixel_mean: tuple[float, float, float] = pixel_stats.IMAGENET_MEAN
  pixel_std: tuple[float, float, float] = pixel_stats.IMAGENET_STD

  @property
  def image_size(self) -> int:
    """Side of the square input images the prior spec (and so the model) expects."""
    return int(self.prior_spec.image_size)

  @property
  def source_names(self) -> tuple[str, ...]:
    """The backbone feature maps used as sources, in prior-spec order."""
    spec = self.prior_spec
    if spec.layer_names is not None:
      return spec.layer_names
    default = self.backbone.source_names
    if len(default) != spec.num_layers:
      raise ValueError(f"prior_spec has {spec.num_layers} layers and no layer_names, but the "
                       f"backbone's {len(default)} default sources are {default}; set "
                       "prior_spec.layer_names")
    return default

  @nn.compact
  def __call__(self, images: Array, train: bool = False) -> tuple[Array, Array]:
    """Predicts box offsets and class logits for every prior.

    Args:
      images: ``[B, S, S, 3]`` RGB in [0, 255] (any real or integer dtype), ``S = image_size``.
      train: unused (no dropout or batch norm); kept so every model has the same signature.

    Returns:
      ``(loc [B, P, 4], logits [B, P, num_classes + 1])`` in float32; ``loc`` are encoded
      offsets (t_cx, t_cy, t_w, t_h) relative to the priors of ``priors.generate(prior_spec)``.
    """
    del train
    if self.num_classes < 1:
      raise ValueError(f"SSD.num_classes must be >= 1, got {self.num_classes}")
    s = self.image_size
    if images.ndim != 4 or images.shape[1:] != (s, s, 3):
      raise ValueError(f"SSD expects images [B, {s}, {s}, 3] (prior_spec.image_size = "
                       f"{self.prior_spec.image_size}), got {images.shape}")
    names = self.source_names
    x = (images.astype(jnp.float32) - jnp.asarray(self.pixel_mean, jnp.float32)) / jnp.asarray(
        self.pixel_std, jnp.float32)
    features = self.backbone(x.astype(self.dtype))

    batch = images.shape[0]
    locs, logits = [], []
    for k, name in enumerate(names):
      if name not in features:
        raise ValueError(f"prior_spec layer {k} is {name!r}, which is not a feature map of the "
                         f"backbone; available: {tuple(features)}")
      f = features[name]
      size = self.prior_spec.feature_map_sizes[k]
      if f.shape[1:3] != (size, size):
        raise ValueError(f"prior_spec layer {k} ({name!r}) expects a {size}x{size} feature map "
                         f"but the backbone gives {f.shape[1]}x{f.shape[2]} for {s}x{s} images")
      boxes = self.prior_spec.boxes_per_cell[k]
      # [B, h, w, boxes * n] -> [B, h * w * boxes, n]: row-major like priors.generate.
      for outputs, n, suffix in ((locs, 4, "loc"), (logits, self.num_classes + 1, "conf")):
        head = layers.conv(boxes * n, 3, name=f"{name}_mbox_{suffix}", padding=1,
                           dtype=self.dtype, kernel_init=layers.xavier_init, impl=self.conv_impl)
        outputs.append(head(f).reshape(batch, -1, n))
    return (jnp.concatenate(locs, axis=1).astype(jnp.float32),
            jnp.concatenate(logits, axis=1).astype(jnp.float32))
