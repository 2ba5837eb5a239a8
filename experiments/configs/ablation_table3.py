r"""The paper's Table 3 in miniature: which source maps of ``ssd_tiny`` get priors and heads.

  python -m experiments.sweep --config=experiments/configs/ablation_table3.py \
      --workdir=runs/table3
  # a 2-minute smoke test of the whole sweep:
  python -m experiments.sweep --config=experiments/configs/ablation_table3.py \
      --workdir=/tmp/table3_smoke --set=num_train_steps=20 --set=data.num_eval_examples=50

ssd_tiny's sources are p3 .. p7 (16, 8, 4, 2, 1 cells on the 128x128 input). Runs, with the
priors (and so the heads, which follow ``config.priors.layers``) on:
  p3-p7  all five maps (1364 priors): the base config, i.e. ablation_table2's ``full`` run
  p3-p6  without the 1x1 map
  p3-p5  without the two coarsest maps
  p3-p4  the two finest maps only
  p4-p7  without the finest map (p3 holds 1024 of the 1364 priors and the smallest boxes)
The paper (SSD300, VOC07 test) drops the coarse maps one by one, 74.3 with all six down to 62.4
with conv7 alone, and keeps about 8732 priors in every row by re-tiling the remaining maps. Here
the linear scale rule (``s_min = 0.1`` .. ``s_max = 0.9``, ratios {1, 2, 1/2}) is re-spread over
the kept maps, so every run still spans the same range of box sizes but with fewer scales, and
the prior count falls with the maps (dropping the coarse maps removes few priors, dropping p3
most of them).

The base config is ``ablation_table2.get_config()`` (1000 steps; see that file for the schedule).
"""

import ml_collections

from experiments.configs import ablation_table2

LAYERS = ("p3", "p4", "p5", "p6", "p7")


def get_config() -> ml_collections.ConfigDict:
  return ablation_table2.get_config()


def get_sweep() -> list[tuple[str, dict]]:
  # All five maps is the base itself (priors.layers None), so that its runs are ablation_table2's
  # `full` ones, config for config: a sweep directory may reuse them.
  subsets = [LAYERS[:4], LAYERS[:3], LAYERS[:2], LAYERS[1:]]
  return [("p3-p7", {})] + [(f"{layers[0]}-{layers[-1]}", {"priors.layers": layers})
                            for layers in subsets]
