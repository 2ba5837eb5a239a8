r"""SSD300 on COCO 2017 (train2017 -> val2017) with the Caffe COCO priors (published: 25.1 AP).

  python -m experiments.main --config=experiments/configs/ssd300_coco.py \
      --config.data.tfds_data_dir=/data/tensorflow_datasets --workdir=runs/ssd300_coco \
      --config.pretrained_backbone=/data/vgg16.npz

Reads tfds ``coco/2017`` (prepare it with ``tfds build coco/2017``); for COCO JSON files use
``--config.data.source=coco_json`` with ``data.annotation_file``/``data.image_dir`` and the
``eval_`` pair. Caffe's COCO schedule: 400k iterations at batch 32, lr 1e-3, x0.1 at 280k, 360k.
"""

import ml_collections

from experiments.configs import common


def get_config() -> ml_collections.ConfigDict:
  c = common.base_config()
  c.model.name = "ssd300_vgg16"
  c.model.prior_preset = "SSD300_COCO"
  c.freeze_layers = common.VGG16_FROZEN_LAYERS
  c.num_train_steps = 400_000
  c.optimizer.decay_steps = (280_000, 360_000)
  c.data.source = "tfds"
  c.data.tfds_name = "coco/2017"
  # val2017 is the reported split, so there is no validation split and no checkpoints_best/:
  # the final step is reported, as in the paper.
  c.data.train_split, c.data.val_split, c.data.eval_split = "train", "", "validation"
  c.data.tfds_data_dir = ml_collections.config_dict.placeholder(str)
  c.data.annotation_file = c.data.image_dir = ""
  c.data.val_annotation_file = c.data.val_image_dir = ""
  c.data.eval_annotation_file = c.data.eval_image_dir = ""
  c.data.max_boxes = 100
  c.eval.metrics = ("coco", "voc07", "voc")
  c.checkpoint.best_metric = "coco_map"
  return c
