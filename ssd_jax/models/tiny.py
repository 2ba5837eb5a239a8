"""A small conv-ReLU backbone for fast CPU experiments (``ssd_tiny``).

A 4x4 stride-4 "patchify" stem, then stride-2 stages turn a 128x128 input into source maps
``p3`` .. ``p7`` of 16, 8, 4, 2, 1 cells (strides 8 .. 128, named like FPN levels). The stem
replaces the usual full-resolution 3x3 convs with few channels, whose backward pass is very slow
on XLA:CPU. No normalization layers, so the variables hold ``params`` only (no ``batch_stats``
to thread through the train step).
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssd_jax import priors
from ssd_jax.models import layers

Array = jax.Array

# (source name, output channels, number of 3x3 convs); the first conv of every stage has
# stride 2.
TINY_STAGES = (("p3", 64, 2), ("p4", 128, 2), ("p5", 128, 1), ("p6", 128, 1), ("p7", 128, 1))

TINY_IMAGE_SIZE = 128

# Scales 0.1 .. 0.9 of the side, boxes of ratio 1, 1 (sqrt(s_k s_k+1)), 2 and 1/2: 4 per cell,
# 1364 priors; covers objects of 0.1 - 0.6 of the image.
TINY_PRIORS = priors.from_linear_scales(
    (16, 8, 4, 2, 1), s_min=0.1, s_max=0.9, aspect_ratios=(2.0,), image_size=TINY_IMAGE_SIZE,
    layer_names=("p3", "p4", "p5", "p6", "p7"))


class TinyBackbone(nn.Module):
  """A patchify stem, then plain conv-ReLU stages whose last maps are the sources.

  Attributes:
    stem_width: output channels of the stem.
    stem_patch: side (and stride) of the stem's patches.
    stages: ``(source name, channels, num_convs)`` per stride-2 stage.
    dtype: computation dtype; params are float32.
    conv_impl: see :func:`ssd_jax.models.layers.conv`.
  """
  stem_width: int = 32
  stem_patch: int = 4
  stages: tuple[tuple[str, int, int], ...] = TINY_STAGES
  dtype: Any = jnp.float32
  conv_impl: str = "xla"

  @property
  def source_names(self) -> tuple[str, ...]:
    return tuple(name for name, _, _ in self.stages)

  @nn.compact
  def __call__(self, x: Array) -> dict[str, Array]:
    """Maps normalized images ``[B, H, W, 3]`` to ``{name: [B, h, w, c]}``, ``h = H / 8`` for
    the first stage (with the default 4x4 stem) and halving at every further stage."""
    conv = functools.partial(layers.conv, dtype=self.dtype, kernel_init=layers.he_init,
                             impl=self.conv_impl)
    x = nn.relu(conv(self.stem_width, self.stem_patch, stride=self.stem_patch, name="stem")(x))
    features = {}
    for name, width, num_convs in self.stages:
      for i in range(num_convs):
        x = nn.relu(conv(width, 3, stride=2 if i == 0 else 1, padding=1,
                         name=f"{name}_conv{i + 1}")(x))
      features[name] = x
    return features
