r"""SSD300 on PASCAL VOC07+12 trainval, evaluated on VOC07 test: the paper's recipe (Table 1).

  python -m experiments.main --config=experiments/configs/ssd300_voc0712.py \
      --config.data.root=/data/VOCdevkit --workdir=runs/ssd300_voc0712 \
      --config.pretrained_backbone=/data/vgg16.npz

SGD momentum 0.9, weight decay 5e-4, batch 32, lr 1e-3 (linear warm-up), x0.1 at 80k and 100k,
120k steps; Caffe's augmentation; SSD300_VOC priors; conv1_1 .. conv2_2 frozen at the ImageNet
weights, as in Caffe's recipe (``common.VGG16_FROZEN_LAYERS``). Reads a VOC devkit directory; for
tfds-built VOC use ``--config.data.source=tfds``. Published: 74.3 mAP (77.2 with the zoom-out
augmentation, which this recipe includes).

Like the paper, the run reports VOC07 test at its final step: there is no validation split, so no
``checkpoints_best/`` (choosing a checkpoint by its test mAP would overstate it). To select on
held-out training data, name a split of it: ``--config.data.val_split=val
--config.data.val_years='("2007",)'`` (then train on ``train`` rather than ``trainval``).
"""

import ml_collections

from experiments.configs import common
from ssd_jax.data import VOC_CLASSES


def data_voc_directory(c: ml_collections.ConfigDict) -> None:
  c.data.source = "voc_directory"
  c.data.root = ""  # --config.data.root=/path/to/VOCdevkit
  c.data.class_names = VOC_CLASSES
  c.data.train_split, c.data.train_years = "trainval", ("2007", "2012")
  c.data.val_split, c.data.val_years = "", ()  # none: see the module docstring
  c.data.eval_split, c.data.eval_years = "test", ("2007",)
  # tfds alternative (``--config.data.source=tfds``), after ``tfds build voc/2007 voc/2012``.
  c.data.train_tfds_name, c.data.eval_tfds_name = "voc/2007+voc/2012", "voc/2007"
  c.data.tfds_data_dir = ml_collections.config_dict.placeholder(str)
  c.data.max_boxes = 50


def get_config() -> ml_collections.ConfigDict:
  c = common.base_config()
  c.model.name = "ssd300_vgg16"
  c.freeze_layers = common.VGG16_FROZEN_LAYERS
  data_voc_directory(c)
  return c
