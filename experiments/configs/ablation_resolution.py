r"""Input resolution in miniature (the paper's SSD300 against SSD512): ``ssd_tiny`` at four input
sizes on synthetic scenes with small objects.

  python -m experiments.sweep --config=experiments/configs/ablation_resolution.py \
      --workdir=runs/resolution --seeds=3

The scenes are drawn at 256 px with 2-8 objects whose size ``sqrt(w h)`` is 2% to 25% of the side
(5 to 64 px), so about an eighth are COCO-"small" (under 32 px in a 640-px image, i.e. 12.8 px
here), two fifths medium and two fifths large. Each run resizes them to its input side, and
ssd_tiny's maps and default priors follow it (``model.image_size``):
  in96, in128, in192, in256   input 96 .. 256 px (128 is ssd_tiny's default)
At 128 px a small object keeps 2.5-6 px, at 256 px 5-13: the tables' AP by object size
(``results.md``'s second table) shows whether a larger input pays on the small objects, as SSD512
gains on VOC's and COCO's small objects over SSD300 (SSD paper, Sec. 3.1 and Table 5). The
schedule is ablation_table2's (1000 steps of 32 on 1000 training images); compute grows with the
input's area (``in256`` costs about 4x ``in128``).
"""

import ml_collections

from experiments.configs import ablation_table2

SIZES = (96, 128, 192, 256)


def get_config() -> ml_collections.ConfigDict:
  c = ablation_table2.get_config()
  c.priors = None  # the default layout of each input size (ssd_tiny's priors follow its input)
  c.data.synthetic.image_size = 256
  c.data.synthetic.scale_range = (0.02, 0.25)
  c.data.synthetic.min_objects = 2
  c.data.synthetic.max_objects = 8
  c.model.image_size = 128
  return c


def get_sweep() -> list[tuple[str, dict]]:
  return [(f"in{size}", {"model.image_size": size}) for size in SIZES]
