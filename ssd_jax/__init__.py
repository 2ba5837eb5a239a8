"""ssd_jax: the Single Shot MultiBox Detector (Liu et al., ECCV 2016) in JAX/Flax.

Modules (import what you need; nothing heavy is imported here):
  boxes        box formats, IoU, SSD offset encoding
  priors       default-box layouts (Caffe presets, the paper's linear scales)
  matching     prior <-> ground-truth matching and training targets
  losses       the multibox loss with hard negative mining
  models       Flax SSD networks (VGG16-reduced SSD300/SSD512, ssd_tiny)
  postprocess  batched NMS and detection decoding
  data         datasets, augmentation and the input pipeline
  train        the data-parallel train loop
  evaluation   VOC / COCO detection metrics
  analysis     prior coverage statistics and data-driven priors
"""

__version__ = "0.1.0"
