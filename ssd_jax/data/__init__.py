"""Detection datasets: sources yielding unaugmented examples (see ``sources`` for the format).

Sources (each with ``class_names``, ``num_examples``, ``shard_size(shard)`` and
``as_dataset(shuffle=False, seed=0, skip=0, shard=(0, 1))``):
  folder_source  one's own dataset folder, its layout recognized (VOC XML, YOLO txt, COCO JSON)
  voc_directory  PASCAL VOC devkit folders (VOC07+12 union by default)
  coco_json      COCO-format JSON + image folder
  tfds_source    tfds-prepared voc/2007, voc/2012, coco/2017 (``'voc/2007+voc/2012'`` = union)
  synthetic      built-in shapes dataset generated on the fly (no files)

An experiment config picks one by name (``config.data.source``) through ``registry.make_source``;
``label_map`` stores a run's classes in its workdir.
"""

from ssd_jax.data.coco import coco_json
from ssd_jax.data.folder import folder_source
from ssd_jax.data.sources import example_order
from ssd_jax.data.sources import Source
from ssd_jax.data.synthetic_shapes import synthetic
from ssd_jax.data.tfds_sources import tfds_source
from ssd_jax.data.voc import VOC_CLASSES
from ssd_jax.data.voc import voc_directory
