r"""Your own data as COCO-format JSON + an image folder; classes come from its ``categories``.

  python -m experiments.main --config=experiments/configs/custom_coco_json.py \
      --config.data.annotation_file=/data/train.json --config.data.image_dir=/data/images \
      --config.data.eval_annotation_file=/data/val.json --config.data.eval_image_dir=/data/images \
      --workdir=runs/mine

Category ids become labels 1..C in increasing id order; the names and ids are stored in
``runs/mine/label_map.json`` for evaluation and detection. ``--config.data.val_annotation_file``
and ``--config.data.val_image_dir`` add a validation split that selects ``checkpoints_best/``.
"""

import ml_collections

from experiments.configs import common


VARIANTS = {"cpu": common.cpu_recipe}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant = common.variant(arg, VARIANTS)
  c = common.base_config()
  c.data.source = "coco_json"
  c.data.annotation_file = c.data.image_dir = ""
  c.data.val_annotation_file = c.data.val_image_dir = ""  # none
  c.data.eval_annotation_file = c.data.eval_image_dir = ""
  c.data.max_boxes = 100
  c.eval.metrics = ("voc07", "voc", "coco")
  return VARIANTS[variant](c) if variant else common.ssd300_recipe(c)
