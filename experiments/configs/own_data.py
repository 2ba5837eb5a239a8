r"""Your own dataset: one folder, in whichever layout your labelling tool exported it.

  python -m experiments.main --config=experiments/configs/own_data.py \
      --config.data.root=/path/to/my_data --workdir=runs/mine

The layout is recognized and logged (:mod:`ssd_jax.data.folder`): PASCAL VOC (``Annotations/``
+ ``JPEGImages/``, or XML beside the images), YOLO txt (``images/`` + ``labels/`` with
``data.yaml`` or ``classes.txt``; Ultralytics' and Roboflow's exports) or COCO JSON. The folder's
``test`` split is reported (else its ``val`` split, else a seeded hold-out of
``data.holdout`` = 20 % of the training images); ``--config.data.validation=True`` adds a
validation split that selects ``checkpoints_best/``. The default is the CPU recipe
(``common.cpu_recipe``: ``ssd_tiny``, a fixed budget of steps, whatever the dataset's size);
``:ssd300`` is the paper's SSD300 recipe, for a GPU.
"""

import ml_collections

from experiments.configs import common


VARIANTS = {"ssd300": common.ssd300_recipe}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant = common.variant(arg, VARIANTS)
  c = common.base_config()
  c.data.source = "folder"
  c.data.root = ""  # --config.data.root=/path/to/my_data
  c.data.class_names = ()  # VOC: () = the object names found, sorted
  c.data.holdout = 0.2  # share of the training images held out for a split the folder lacks
  c.data.split_seed = 0
  c.data.validation = False
  # Crowded photos: the evaluation scores at most this many objects per image.
  c.data.max_boxes = 150
  c.eval.metrics = ("voc07", "voc", "coco")
  return VARIANTS[variant](c) if variant else common.cpu_recipe(c)
