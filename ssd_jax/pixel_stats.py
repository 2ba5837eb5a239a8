"""RGB pixel statistics in ``[0, 255]`` units: the one home of every mean and std in the code base.

The model normalizes its input with a ``(mean, std)`` pair (:class:`ssd_jax.models.SSD`, which
re-exports these); the ``tf.data`` augmentation fills its zoom-out canvas with a mean colour.
This module imports nothing, so the TensorFlow data code can use it without pulling in JAX/Flax.
"""

# torchvision's ImageNet normalization: what its VGG16 weights (the models' default) expect.
IMAGENET_MEAN: tuple[float, float, float] = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD: tuple[float, float, float] = (0.229 * 255, 0.224 * 255, 0.225 * 255)
# Caffe's VGG16 and SSD: the mean pixel (104, 117, 123) in BGR, i.e. this in RGB, and no scaling.
# Caffe SSD also paints its zoom-out canvas with this mean.
CAFFE_MEAN: tuple[float, float, float] = (123.0, 117.0, 104.0)
CAFFE_STD: tuple[float, float, float] = (1.0, 1.0, 1.0)
