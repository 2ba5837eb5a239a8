r"""Your own data as one PASCAL VOC folder: ``JPEGImages/``, ``Annotations/``, ``ImageSets/Main/``.

  python -m experiments.main --config=experiments/configs/custom_voc_dir.py \
      --config.data.root=/path/to/my_data --workdir=runs/mine

The classes are the object names found in the training split's annotations (sorted, logged, and
stored in ``runs/mine/label_map.json`` for evaluation and detection); an evaluation image with a
class training never saw is an error naming its file. Splits are ``ImageSets/Main/trainval.txt``
(training) and ``test.txt`` (reported); ``--config.data.val_split=val`` adds a validation split
that selects ``checkpoints_best/``. A devkit with ``VOC<year>`` subfolders works too:
``--config.data.train_years='("2007", "2012")' --config.data.eval_years='("2007",)'``.
On CPU, use the small model: ``--config.model.name=ssd_tiny --config.batch_size=16``.
"""

import ml_collections

from experiments.configs import common, ssd300_voc0712


VARIANTS = {"cpu": common.cpu_recipe}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant = common.variant(arg, VARIANTS)
  c = common.base_config()
  ssd300_voc0712.data_voc_directory(c)
  c.data.root = ""  # --config.data.root=/path/to/my_data
  c.data.class_names = ()  # () = the names in the training annotations
  c.data.train_years = c.data.val_years = c.data.eval_years = ()  # () = root is the VOC folder
  return VARIANTS[variant](c) if variant else common.ssd300_recipe(c)
