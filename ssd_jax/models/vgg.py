"""VGG16-reduced backbone of SSD300/SSD512 with the extra feature layers (Liu et al., Fig. 2).

Layer names follow the paper and Caffe (``conv1_1`` ... ``conv5_3``, ``fc6``, ``fc7``,
``conv8_1`` ... ``conv12_2``); :mod:`ssd_jax.pretrained` maps ImageNet VGG16 weights onto them.
At a 300 input the feature maps are conv4_3 38x38 (pool3 rounds 75 up), fc7 19, conv8_2 10,
conv9_2 5, conv10_2 3, conv11_2 1; at 512: 64, 32, 16, 8, 4, 2 and conv12_2 1.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssd_jax.models import layers

Array = jax.Array

# Output channels of the 3x3 convs of each VGG16 stage (a 2x2/2 max pool precedes stages 2-5).
_VGG16_STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))

# Extra layers: name -> (1x1 channels, channels, kernel, stride, padding) of the second conv.
_EXTRAS = {
    "ssd300": (("conv8", (256, 512, 3, 2, 1)), ("conv9", (128, 256, 3, 2, 1)),
               ("conv10", (128, 256, 3, 1, 0)), ("conv11", (128, 256, 3, 1, 0))),
    # Caffe ssd_pascal_512.py: all stride 2 down to 2x2, then a 4x4 pad-1 conv to 1x1.
    "ssd512": (("conv8", (256, 512, 3, 2, 1)), ("conv9", (128, 256, 3, 2, 1)),
               ("conv10", (128, 256, 3, 2, 1)), ("conv11", (128, 256, 3, 2, 1)),
               ("conv12", (128, 256, 4, 1, 1))),
}


def _extras(variant: str):
  if variant not in _EXTRAS:
    raise ValueError(f"VGG16Backbone.variant must be one of {tuple(_EXTRAS)}, got {variant!r}")
  return _EXTRAS[variant]


class VGG16Backbone(nn.Module):
  """VGG16 conv1_1..conv5_3, pool5 3x3/1, atrous fc6, fc7 and the SSD extra layers.

  Attributes:
    variant: ``"ssd300"`` (extras conv8..conv11) or ``"ssd512"`` (conv8..conv12).
    dtype: computation dtype; params are float32.
    conv_impl: see :func:`ssd_jax.models.layers.conv`.
  """
  variant: str = "ssd300"
  dtype: Any = jnp.float32
  conv_impl: str = "xla"

  @property
  def source_names(self) -> tuple[str, ...]:
    """Names of the feature maps :meth:`__call__` returns, in SSD's default source order."""
    return ("conv4_3", "fc7") + tuple(f"{name}_2" for name, _ in _extras(self.variant))

  @nn.compact
  def __call__(self, x: Array) -> dict[str, Array]:
    """Maps normalized images ``[B, H, W, 3]`` to ``{name: [B, h, w, c]}`` source feature maps.

    ``conv4_3`` is returned after L2Norm (the unnormalized map continues to pool4).
    """
    extras = _extras(self.variant)

    def conv_relu(y, features, kernel, name, init=layers.xavier_init, **kw):
      c = layers.conv(features, kernel, name=name, dtype=self.dtype, kernel_init=init,
                      impl=self.conv_impl, **kw)
      return nn.relu(c(y))

    features = {}
    for stage, widths in enumerate(_VGG16_STAGES, start=1):
      if stage > 1:
        # Caffe pools round up; only pool3 at a 300 input (75 -> 38) is affected.
        x = layers.max_pool(x, 2, 2, ceil_mode=True)
      for i, width in enumerate(widths, start=1):
        x = conv_relu(x, width, 3, f"conv{stage}_{i}", init=layers.vgg_init, padding=1)
      if stage == 4:  # conv4_3 is a source; its unnormalized map goes on to pool4.
        features["conv4_3"] = layers.L2Norm(dtype=self.dtype, name="conv4_3_norm")(x)
    x = layers.max_pool(x, 3, 1, padding=1)  # pool5: 3x3/1 keeps the 19x19 (32x32) resolution.
    x = conv_relu(x, 1024, 3, "fc6", padding=6, dilation=6)
    x = conv_relu(x, 1024, 1, "fc7")
    features["fc7"] = x
    for name, (mid, out, kernel, stride, padding) in extras:
      x = conv_relu(x, mid, 1, f"{name}_1")
      x = conv_relu(x, out, kernel, f"{name}_2", stride=stride, padding=padding)
      features[f"{name}_2"] = x
    return features
