r"""Draws training augmentations: a PNG grid, one source image per row, then augmented copies.

  python -m experiments.show_augmentations --output=augmentations.png
  python -m experiments.show_augmentations --config=experiments/configs/ssd300_voc0712.py \
      --config.data.root=/data/VOCdevkit --num=16 --per_row=4 --seed=1
  # the "no data augmentation" ablation only resizes:
  python -m experiments.show_augmentations --config.augment.photometric=False \
      --config.augment.expand=False --config.augment.crop=False --config.augment.flip=False

Each row starts with an unaugmented training example at its own size (the first column), followed
by ``--per_row`` outputs of ``augment.train_preprocess`` on it with different seeds, at the model
input size, exactly what the training pipeline feeds the model (before padding the boxes).
Ground-truth boxes are drawn with their class names (``visualize.write_augmentation_grid``). The
source and the augmentation knobs come from the experiment config (``config.data``,
``config.augment``), the source built by ``experiment.create_data`` as for training, so any
config override of ``experiments.main`` applies here too.
"""

import os

from absl import app, flags, logging
from ml_collections import config_flags

from ssd_jax import experiment, visualize
from ssd_jax.data import augment

_DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs",
                               "synthetic.py")
_CONFIG = config_flags.DEFINE_config_file("config", _DEFAULT_CONFIG, "Experiment config file.",
                                          lock_config=True)
_NUM = flags.DEFINE_integer("num", 16, "Augmented samples drawn in all.")
_PER_ROW = flags.DEFINE_integer("per_row", 4, "Augmented samples per source image (row).")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", None,
                                   "Output side in pixels; default: the config model's input.")
_SEED = flags.DEFINE_integer("seed", 0, "Picks the source images and the augmentation seeds.")
_OUTPUT = flags.DEFINE_string("output", "augmentations.png", "Output PNG.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  # The run's sources as training builds them; only the training one is drawn.
  source = experiment.create_data(config).train
  image_size = experiment.image_size(config) if _IMAGE_SIZE.value is None else _IMAGE_SIZE.value
  visualize.write_augmentation_grid(source, augment.AugmentConfig(**config.augment), image_size,
                                    _OUTPUT.value, _NUM.value, _PER_ROW.value, _SEED.value)
  logging.info("Wrote %s (first column: the unaugmented images).", _OUTPUT.value)


if __name__ == "__main__":
  app.run(main)
