r"""Your own data in the PASCAL VOC layout (``VOC<year>/{JPEGImages,Annotations,ImageSets/Main}``).

  python -m experiments.main --config=experiments/configs/custom_voc_dir.py \
      --config.data.root=/path/to/VOCdevkit --config.data.train_years='("2007",)' \
      --workdir=runs/mine
  # on CPU, with the small model:
  ... --config.model.name=ssd_tiny --config.batch_size=16

Class names are VOC's 20 unless ``data.class_names`` lists yours (any name in the XML files that
is not in the list is an error naming the file).
"""

import ml_collections

from experiments.configs import common, ssd300_voc0712


def get_config() -> ml_collections.ConfigDict:
  c = common.base_config()
  ssd300_voc0712.data_voc_directory(c)
  c.data.class_names = ml_collections.config_dict.placeholder(tuple)
  c.num_train_steps = 20_000
  c.optimizer.decay_steps = (14_000, 18_000)
  c.eval.every_steps = 2_000
  c.checkpoint.every_steps = 1_000
  return c
