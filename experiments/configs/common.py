"""Fields every experiment config shares; each config starts from ``base_config()``.

Every config has ``num_train_steps``, ``batch_size`` (global, all devices), ``optimizer.lr`` and
``seed``, so any run is shortened or resized the same way:
``--config.num_train_steps=100 --config.batch_size=8``.
"""

import ml_collections


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.num_train_steps = 120_000
  c.batch_size = 32
  c.log_every_steps = 50

  c.model = ml_collections.ConfigDict()
  c.model.name = "ssd300_vgg16"
  c.model.dtype = "float32"  # or "bfloat16": bf16 compute, float32 params and loss
  c.model.conv_impl = "auto"  # Winograd convs on CPU (ssd_jax.models.conv), XLA elsewhere
  # None = the model's default priors. For ablations, a ConfigDict with the fields read by
  # ssd_jax.experiment.prior_spec (layers, s_min, s_max, first_scale, aspect_ratios).
  c.priors = ml_collections.config_dict.placeholder(ml_collections.ConfigDict)
  c.pretrained_backbone = ""  # path of torchvision VGG16 weights (.pth/.npz), see pretrained.py

  c.data = ml_collections.ConfigDict()
  c.data.source = "synthetic"
  c.data.max_boxes = 50

  # Caffe's augmentation recipe; fields of ssd_jax.data.augment.AugmentConfig.
  c.augment = ml_collections.ConfigDict(dict(photometric=True, expand=True, crop=True, flip=True))

  c.matching = ml_collections.ConfigDict(dict(iou_threshold=0.5, mode="per_gt",
                                              variances=(0.1, 0.2)))
  c.loss = ml_collections.ConfigDict(dict(neg_pos_ratio=3.0, alpha=1.0))

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "sgd"
  c.optimizer.lr = 1e-3
  c.optimizer.momentum = 0.9
  c.optimizer.weight_decay = 5e-4
  c.optimizer.warmup_steps = 1000
  c.optimizer.warmup_factor = 0.1
  c.optimizer.decay_steps = (80_000, 100_000)
  c.optimizer.decay_factor = 0.1
  c.optimizer.grad_clip_norm = 0.0  # 0 = off

  c.eval = ml_collections.ConfigDict()
  c.eval.every_steps = 10_000
  c.eval.batch_size = 32
  c.eval.metrics = ("voc07", "voc")
  c.eval.score_threshold = 0.01
  c.eval.nms_iou_threshold = 0.45
  c.eval.pre_nms_top_k = 400
  c.eval.max_detections = 200
  c.eval.num_images_to_draw = 8
  c.eval.draw_score_threshold = 0.3

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every_steps = 5_000
  c.checkpoint.keep = 3
  c.checkpoint.best_metric = "voc07_map"  # on the validation split (checkpoints_best/), if any

  # Multi-host: set initialize=True (coordinator_address etc. may stay None on managed clusters).
  c.distributed = ml_collections.ConfigDict(dict(initialize=False, coordinator_address="",
                                                 num_processes=0, process_id=0))
  return c
