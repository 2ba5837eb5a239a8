"""ssd_jax: the Single Shot MultiBox Detector (Liu et al., ECCV 2016) in JAX/Flax.

Modules (import what you need; nothing heavy is imported here):
  boxes        box formats, IoU, SSD offset encoding
  priors       default-box layouts (Caffe presets, the paper's linear scales, k-means)
  matching     prior <-> ground-truth matching and training targets
  losses       the multibox loss with hard negative mining
  models       Flax SSD networks (VGG16-reduced SSD300/SSD512, ssd_tiny)
  postprocess  NMS and detection decoding
  data         datasets (found by name: data.registry), augmentation, the input pipeline
  experiment   the composition root: an experiment config -> its parts
  train_step   the data-parallel train step
  train        the train loop (train_and_evaluate)
  checkpoints  orbax checkpoints of a run
  inference    the jitted predict function
  evaluation   the Evaluator: predictions over a dataset, scored by metrics
  metrics      VOC / COCO detection metrics
  detect       detection on image files
  analysis     prior coverage statistics
"""

__version__ = "0.1.0"
