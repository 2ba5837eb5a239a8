"""A small conv-ReLU backbone for fast CPU experiments (``ssd_tiny``).

A 4x4 stride-4 "patchify" stem, then stride-2 stages turn a 128x128 input into source maps
``p3`` .. ``p7`` of 16, 8, 4, 2, 1 cells (strides 8 .. 128, named like FPN levels); other input
sides give other map sizes (300: 38, 19, 10, 5, 3), and :func:`tiny_priors` the layout. The stem
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
_STEM_PATCH = 4


def feature_map_sizes(image_size: int, stem_patch: int = _STEM_PATCH,
                      num_stages: int = len(TINY_STAGES)) -> tuple[int, ...]:
  """Sides of the source maps for a square input: the stem's ``floor(S / patch)``, then
  ``ceil(n / 2)`` per stage (3x3 convs of stride 2 with padding 1)."""
  n, sizes = image_size // stem_patch, []
  for _ in range(num_stages):
    n = -(-n // 2)
    sizes.append(n)
  return tuple(sizes)


def tiny_priors(image_size: int = TINY_IMAGE_SIZE) -> priors.PriorSpec:
  """The default layout for a square input of ``image_size`` pixels (a multiple of the stem's
  4-pixel patch): scales 0.1 .. 0.9 of the side on ``p3`` .. ``p7``, boxes of ratio 1, 1
  (``sqrt(s_k s_k+1)``), 2 and 1/2, 4 per cell (1364 priors at 128 px, 7756 at 300 px).

  A larger input keeps small objects several cells wide: at 128 px an object 12% of a 400-px
  photo is 15 px, at 320 px it is 38 px.
  """
  if image_size < 4 * _STEM_PATCH or image_size % _STEM_PATCH:
    raise ValueError(f"ssd_tiny's image_size must be a multiple of {_STEM_PATCH} and >= "
                     f"{4 * _STEM_PATCH}, got {image_size}")
  return priors.from_linear_scales(
      feature_map_sizes(image_size), s_min=0.1, s_max=0.9, aspect_ratios=(2.0,),
      image_size=image_size, layer_names=tuple(name for name, _, _ in TINY_STAGES))


TINY_PRIORS = tiny_priors()


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
  stem_patch: int = _STEM_PATCH
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
