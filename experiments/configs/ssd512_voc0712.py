r"""SSD512 on PASCAL VOC07+12 trainval, evaluated on VOC07 test (published: 76.8 / 79.8 mAP).

  python -m experiments.main --config=experiments/configs/ssd512_voc0712.py \
      --config.data.root=/data/VOCdevkit --workdir=runs/ssd512_voc0712 \
      --config.pretrained_backbone=/data/vgg16.npz
"""

import ml_collections

from experiments.configs import ssd300_voc0712


def get_config() -> ml_collections.ConfigDict:
  c = ssd300_voc0712.get_config()
  c.model.name = "ssd512_vgg16"
  return c
