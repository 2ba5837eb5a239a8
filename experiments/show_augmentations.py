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
Ground-truth boxes are drawn with their class names. The source and the augmentation knobs come
from the experiment config (``config.data``, ``config.augment``), so any config override of
``experiments.main`` applies here too.
"""

import os
from typing import Any, Optional

from absl import app, flags, logging
import ml_collections
from ml_collections import config_flags
import numpy as np
import tensorflow as tf

from ssd_jax import train, visualize
from ssd_jax.data import augment as augment_lib
from ssd_jax.data import config as data_config

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

Panel = dict[str, np.ndarray]


def _panel(example: dict[str, Any]) -> Panel:
  """An example -> ``{'image', 'boxes' [N, 4] xyxy pixels of that image, 'labels' [N]}``."""
  image = np.asarray(example["image"])
  height, width = image.shape[:2]
  boxes = np.asarray(example["boxes"], np.float32).reshape(-1, 4)
  return {"image": image, "boxes": boxes * np.array([width, height, width, height], np.float32),
          "labels": np.asarray(example["labels"], np.int32)}


def augmentation_panels(source, augment: augment_lib.AugmentConfig, image_size: int, num: int,
                        per_row: int, seed: int = 0) -> list[Panel]:
  """Source examples and their augmentations, row-major (see the module docstring).

  Args:
    source: a dataset source (``ssd_jax.data``).
    augment: the augmentation knobs.
    image_size: side of the augmented images, pixels.
    num: augmented samples in all; ``ceil(num / per_row)`` source images are used, the last one
      with the remainder.
    per_row: augmented samples per source image.
    seed: shuffles the source (which images) and seeds the augmentations: sample ``k`` (0-based,
      row-major) uses the stateless seed ``(seed, k)``.

  Returns:
    Per row, the original example then its augmentations, each ``{'image': uint8 [H, W, 3],
    'boxes': [N, 4] xyxy pixels of that image, 'labels': [N] (1..C)}``.

  Raises:
    ValueError: for non-positive ``num`` / ``per_row`` / ``image_size``, or a source with fewer
      than ``ceil(num / per_row)`` examples.
  """
  for name, value in (("num", num), ("per_row", per_row), ("image_size", image_size)):
    if value < 1:
      raise ValueError(f"{name} must be >= 1, got {value}")
  rows = -(-num // per_row)
  if source.num_examples < rows:
    raise ValueError(f"the source has {source.num_examples} examples; {num} samples at "
                     f"{per_row} per row need {rows}")
  panels = []
  for row, example in enumerate(source.as_dataset(shuffle=True, seed=seed).take(rows)):
    panels.append(_panel(example))
    for k in range(row * per_row, min(num, (row + 1) * per_row)):
      out = augment_lib.train_preprocess(example, tf.constant([seed, k], tf.int64), image_size,
                                         augment)
      panels.append(_panel(out))
  return panels


def write_augmentation_grid(config: ml_collections.ConfigDict, output: str, num: int,
                            per_row: int, image_size: Optional[int] = None,
                            seed: int = 0) -> list[Panel]:
  """Draws :func:`augmentation_panels` of the config's training data to the PNG ``output``.

  ``image_size`` defaults to the input size of the config's model. Returns the panels drawn.
  """
  source = data_config.make_source(config.data, train=True)
  if image_size is None:
    image_size = train.create_model(config, len(source.class_names)).image_size
  augment = augment_lib.AugmentConfig(**dict(config.augment))
  panels = augmentation_panels(source, augment, image_size, num, per_row, seed)
  # draw_grid draws every box whose score reaches the threshold; ground truth has score 1.
  annotations = [{**p, "scores": np.ones(len(p["labels"]), np.float32)} for p in panels]
  visualize.draw_grid([p["image"] for p in panels], annotations, source.class_names, output,
                      columns=per_row + 1)
  return panels


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  write_augmentation_grid(_CONFIG.value, _OUTPUT.value, _NUM.value, _PER_ROW.value,
                          _IMAGE_SIZE.value, _SEED.value)
  logging.info("Wrote %s (first column: the unaugmented images).", _OUTPUT.value)


if __name__ == "__main__":
  app.run(main)
