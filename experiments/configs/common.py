"""Fields every experiment config shares; each config starts from ``base_config()``.

Every config has ``num_train_steps``, ``batch_size`` (global, all devices), ``optimizer.lr`` and
``seed``, so any run is shortened or resized the same way:
``--config.num_train_steps=100 --config.batch_size=8``.

Lengths in epochs of the training split: ``num_epochs``, ``eval.every_epochs``,
``checkpoint.every_epochs``, ``optimizer.warmup_epochs`` and ``optimizer.decay_epochs``, when
set (not None), replace their ``*_steps`` fields (``ssd_jax.experiment.in_steps``).
"""

import ml_collections


# Caffe SSD's recipes fine-tune ImageNet VGG16 with its first two blocks frozen (freeze_layers in
# ssd_pascal.py and ssd_coco.py): they keep the ImageNet weights, and the step skips their
# backward pass, its most expensive part on a CPU (conv1_2's alone is a fifth of the step).
VGG16_FROZEN_LAYERS = ("conv1_1", "conv1_2", "conv2_1", "conv2_2")


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.num_train_steps = 120_000
  c.num_epochs = ml_collections.config_dict.placeholder(float)  # set: replaces num_train_steps
  c.batch_size = 32
  c.log_every_steps = 50

  c.model = ml_collections.ConfigDict()
  c.model.name = "ssd300_vgg16"
  c.model.dtype = "float32"  # or "bfloat16": bf16 compute, float32 params and loss
  c.model.conv_impl = "auto"  # Winograd convs on CPU (ssd_jax.models.conv), XLA elsewhere
  # None = the model's input side; ssd_tiny takes any multiple of 4 (priors and maps follow).
  c.model.image_size = ml_collections.config_dict.placeholder(int)
  # None = the model's default priors. For ablations, a ConfigDict with the fields read by
  # ssd_jax.run_priors.prior_spec (layers, s_min, s_max, first_scale, aspect_ratios), and
  # kmeans: None, or a ConfigDict (seed=0, max_images=None, iters=300; {} = those) for priors
  # fitted to the training boxes by k-means with 1 - IoU, as many per cell on every layer as the
  # layout the other fields (or the model's default) give, so the heads stay the same. The fit
  # runs at training start and is saved in <workdir>/priors.json, which eval, detection and
  # export read; e.g. --config.priors="{'kmeans': {'seed': 0}}".
  c.priors = ml_collections.config_dict.placeholder(ml_collections.ConfigDict)
  c.pretrained_backbone = ""  # path of torchvision VGG16 weights (.pth/.npz), see pretrained.py
  # Another run's workdir to start from (same model; ssd_jax.warm_start): its backbone, extra
  # layers and box heads, and the class-head channels of the classes both runs have.
  c.init_from = ""
  # Layers kept at the values loaded by either of the two above: no gradient, no update, no
  # weight decay (Caffe SSD's freeze_layers; the paper configs: VGG16_FROZEN_LAYERS).
  c.freeze_layers = ()

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
  c.optimizer.schedule = "piecewise"  # or "cosine" (to 0 at the last step)
  c.optimizer.lr = 1e-3
  c.optimizer.momentum = 0.9
  c.optimizer.weight_decay = 5e-4
  c.optimizer.warmup_steps = 1000
  c.optimizer.warmup_factor = 0.1
  c.optimizer.warmup_epochs = ml_collections.config_dict.placeholder(float)
  c.optimizer.decay_steps = (80_000, 100_000)  # piecewise schedule: lr x decay_factor at each
  c.optimizer.decay_epochs = ml_collections.config_dict.placeholder(tuple)
  c.optimizer.decay_factor = 0.1
  c.optimizer.grad_clip_norm = 0.0  # 0 = off

  c.eval = ml_collections.ConfigDict()
  c.eval.every_steps = 10_000
  c.eval.every_epochs = ml_collections.config_dict.placeholder(float)
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
  c.checkpoint.every_epochs = ml_collections.config_dict.placeholder(float)
  c.checkpoint.keep = 3
  c.checkpoint.best_metric = "voc07_map"  # on the validation split (checkpoints_best/), if any

  # Multi-host: set initialize=True (coordinator_address etc. may stay None on managed clusters).
  c.distributed = ml_collections.ConfigDict(dict(initialize=False, coordinator_address="",
                                                 num_processes=0, process_id=0))
  return c


def variant(arg: str | None, variants: dict) -> str:
  """The config-string variant of ``get_config(arg)`` (``--config=file.py:<arg>``, as big_vision
  does): ``''`` or one of ``variants``' names, else a ValueError listing them."""
  arg = arg or ""
  if arg and arg not in variants:
    raise ValueError(f"unknown config variant {arg!r}; valid: {sorted(variants)} "
                     "(e.g. --config=experiments/configs/custom_voc_dir.py:cpu)")
  return arg


def ssd300_recipe(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The paper's SSD300 (``base_config``'s model and SGD) sized for a few thousand of one's own
  images: 20k steps, lr x0.1 at 14k and 18k. For a GPU."""
  c.num_train_steps = 20_000
  c.optimizer.decay_steps = (14_000, 18_000)
  c.eval.every_steps = 2_000
  c.checkpoint.every_steps = 1_000
  return c


def cpu_recipe(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """``ssd_tiny`` from scratch on one's own photos (50 to a few thousand), on a laptop's CPU.

  A fixed budget of optimizer steps, whatever the dataset's size (``num_train_steps``; ~11
  minutes on 2 cores of a Zen 4 EPYC, evaluations included): sized in epochs, a 50-image set
  would stop after a minute, long before the model has learned. AdamW with a cosine schedule to
  0 at the last step (no decay steps to retune). The input is larger than ``ssd_tiny``'s default
  128 px and the smallest priors smaller than the paper's, because users' photos are full of
  small objects (an object 5% of a 400-px photo wide is 16 px at 320 px, 6 px at 128).
  """
  c.model.name = "ssd_tiny"
  c.model.image_size = 320
  c.priors = ml_collections.ConfigDict(dict(s_min=0.05, s_max=0.8))
  c.batch_size = 16
  c.num_train_steps = 2000
  c.optimizer.name = "adamw"
  c.optimizer.schedule = "cosine"
  c.optimizer.lr = 3e-3
  c.optimizer.weight_decay = 1e-4
  c.optimizer.warmup_steps = 50
  c.eval.every_steps = 500
  c.eval.batch_size = 16
  c.checkpoint.every_steps = 250
  c.log_every_steps = 20
  return c
