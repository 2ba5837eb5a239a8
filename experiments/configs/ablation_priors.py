r"""Data-driven priors against the paper's: ``ssd_tiny`` on the synthetic shapes, same prior count.

  python -m experiments.sweep --config=experiments/configs/ablation_priors.py \
      --workdir=runs/priors

Compares ssd_tiny's default layout (the paper's linear scale rule, boxes {1, 1', 2, 1/2} per
cell) with priors fitted to the training boxes by k-means with the ``1 - IoU`` distance
(``config.priors.kmeans``, YOLOv2's anchor clustering) with the same number of boxes per cell on
every map, so the heads, the 1364 priors and everything else are the same and only the box
shapes differ; then the same at half the count (ratio-1 boxes only against 2 fitted boxes per
cell), where the shapes should matter more:
  paper          the default layout (ablation_table2's ``full``)
  kmeans         k-means priors, 4 per cell (seed 0)
  kmeans_seed1   the same with k-means seed 1: how much the fit varies
  paper_ratio1   boxes {1, 1'} only (ablation_table2's ``ratio1_only``), 2 per cell
  kmeans_2       k-means priors, 2 per cell
Read: VOC07/VOC mAP, AP by object size and the priors' coverage of the test boxes
(``prior_recall``, the share whose best prior reaches the matching IoU, and
``prior_mean_best_iou``) in ``results.md`` and ``<workdir>/<run>/metrics.json``; the shape fit of
each fitted layout (the training boxes' mean best centred IoU with the per-cell boxes, fitted and
replaced) in ``<workdir>/<run>/priors.json`` and the run's log. The base is
ablation_table2's (1000 steps on 1000 training images); k-means clusters those images' boxes.
"""

import ml_collections

from experiments.configs import ablation_table2

# Fields of config.priors.kmeans (ssd_jax.run_priors.KMEANS_DEFAULTS).
KMEANS = {"seed": 0, "max_images": None, "iters": 300}


def get_config() -> ml_collections.ConfigDict:
  c = ablation_table2.get_config()
  c.priors.kmeans = ml_collections.config_dict.placeholder(ml_collections.ConfigDict)
  return c


def get_sweep() -> list[tuple[str, dict]]:
  return [
      ("paper", {}),
      ("kmeans", {"priors.kmeans": KMEANS}),
      ("kmeans_seed1", {"priors.kmeans": {**KMEANS, "seed": 1}}),
      ("paper_ratio1", {"priors.aspect_ratios": ()}),
      ("kmeans_2", {"priors.aspect_ratios": (), "priors.kmeans": KMEANS}),
  ]
