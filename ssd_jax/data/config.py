"""Dataset sources chosen by name in an experiment config (``config.data``).

``config.data.source`` picks the reader; the other fields are its arguments, so a user's own
dataset is a path on the command line, not code:

  synthetic      ``data.synthetic`` (kwargs of :func:`ssd_jax.data.synthetic`),
                 ``data.num_train_examples`` / ``data.num_eval_examples``
  voc_directory  ``data.root``, ``data.train_split``/``data.eval_split``,
                 ``data.train_years``/``data.eval_years``, ``data.class_names`` (default VOC's)
  coco_json      ``data.annotation_file`` + ``data.image_dir`` (training) and
                 ``data.eval_annotation_file`` + ``data.eval_image_dir`` (evaluation)
  tfds           ``data.tfds_name`` (or ``data.train_tfds_name``/``data.eval_tfds_name``),
                 ``data.train_split``/``data.eval_split``, ``data.tfds_data_dir``
"""

import ml_collections

from ssd_jax.data import VOC_CLASSES, coco_json, sources, synthetic, tfds_source, voc_directory

SOURCES = ("synthetic", "voc_directory", "coco_json", "tfds")


def _required(data: ml_collections.ConfigDict, field: str, hint: str) -> str:
  value = data.get(field)
  if not value:
    raise ValueError(f"config.data.{field} is not set ({data.source}): pass "
                     f"--config.data.{field}={hint}")
  return value


def make_source(data: ml_collections.ConfigDict, train: bool) -> sources.Source:
  """The training (``train=True``) or evaluation source described by ``config.data``."""
  kind = data.source
  which = "train" if train else "eval"
  if kind == "synthetic":
    return synthetic(split="train" if train else "test",
                     num_examples=data.get(f"num_{which}_examples"), **dict(data.synthetic))
  if kind == "voc_directory":
    root = _required(data, "root", "/path/to/VOCdevkit")
    return voc_directory(root, split=data[f"{which}_split"], years=tuple(data[f"{which}_years"]),
                         class_names=tuple(data.get("class_names") or VOC_CLASSES))
  if kind == "coco_json":
    prefix = "" if train else "eval_"
    return coco_json(_required(data, f"{prefix}annotation_file", "/path/to/annotations.json"),
                     _required(data, f"{prefix}image_dir", "/path/to/images"))
  if kind == "tfds":
    name = data.get(f"{which}_tfds_name") or _required(data, "tfds_name", "voc/2007")
    return tfds_source(name, data[f"{which}_split"], data_dir=data.get("tfds_data_dir"))
  raise ValueError(f"config.data.source must be one of {SOURCES}, got {kind!r}")
