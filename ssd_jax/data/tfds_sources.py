"""Detection datasets prepared by TensorFlow Datasets (``voc/2007``, ``voc/2012``, ``coco/2017``).

Nothing is downloaded here: prepare the data once with ``tfds build voc/2007 --data_dir=...``
(VOC 2012, COCO: same) and pass ``data_dir``.

Offline tests: plain ``tfds.testing.mock_data`` generates ``objects`` sequences of unequal lengths,
which tfds' own encoder rejects once a decoder is given (this source always reads the image
undecoded, see ``TfdsSource.as_dataset``); ``tests/fixtures.py:mock_tfds_detection`` mocks
well-formed examples instead.
"""

from typing import Any

import numpy as np
import tensorflow as tf

from ssd_jax.data import sources

# Examples (encoded images, ~100-200 kB each) held by the shuffle buffer behind the file shuffle.
_SHUFFLE_BUFFER = 1024
# Split aliases accepted on top of tfds split specs.
_SPLIT_ALIASES = {"trainval": "train+validation"}


def tfds_source(name: str, split: str, data_dir: str | None = None) -> "TfdsSource":
  """A tfds detection dataset, or the union of several (``'+'`` in ``name``).

  ``tfds_source('voc/2007+voc/2012', 'trainval')`` is the VOC07+12 trainval union;
  ``tfds_source('voc/2007', 'test')`` the VOC07 test set; ``tfds_source('coco/2017', 'train')``.
  Any tfds dataset with an ``image`` and ``objects/{bbox, label}`` works: ``objects/is_difficult``,
  ``objects/is_crowd`` and ``objects/area`` (COCO) become ``difficult``, ``crowd`` and ``area``
  when present (without ``objects/area``, ``area`` is the box's ``w * h`` in pixels); ``image_id``
  is ``image/id`` when present (COCO, ``'397133'``), else the stem of ``image/filename`` (VOC,
  ``'000005'``). tfds boxes ``(ymin, xmin, ymax, xmax)`` become xyxy, labels ``0..C-1`` become
  ``1..C``; boxes with zero width or height are dropped.

  Args:
    name: tfds name(s) with config, e.g. ``'voc/2007'`` or ``'voc/2007+voc/2012'``.
    split: a tfds split spec applied to every dataset in ``name`` (``'train'``, ``'test[:10%]'``),
      or ``'trainval'`` for ``'train+validation'``.
    data_dir: tfds data directory (default: tfds' own, ``~/tensorflow_datasets``).

  Raises:
    ValueError: a dataset is not prepared in ``data_dir``, has no ``objects/bbox`` and
      ``objects/label`` features, or the datasets have different class names.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top  (slow import)

  split = _SPLIT_ALIASES.get(split, split)
  names = [n.strip() for n in name.split("+")]
  builders = [tfds.builder(n, data_dir=data_dir) for n in names]
  class_names = None
  for builder in builders:
    features = builder.info.features
    if "objects" not in features or not {"bbox", "label"} <= set(features["objects"].keys()):
      raise ValueError(f"tfds dataset {builder.name} has no objects/bbox and objects/label "
                       "features; not a detection dataset")
    label_names = list(features["objects"]["label"].names)
    if class_names is not None and label_names != class_names:
      raise ValueError(f"tfds datasets in {name!r} have different class names")
    class_names = label_names
  return TfdsSource(names, builders, split, class_names)


class TfdsSource(sources.Source):
  """tfds builders read with one split spec; see ``tfds_source``."""

  def __init__(self, names: list[str], builders: list[Any], split: str, class_names: list[str]):
    self.names = names
    self.builders = builders
    self.split = split
    self.class_names = class_names
    # The cardinality (known for prepared tfds data) also counts mocked data correctly, unlike
    # info.splits.
    self._sizes = []
    for name, builder in zip(names, builders):
      try:
        size = int(builder.as_dataset(split=split).cardinality())
      except AssertionError as e:  # What tfds raises for data that was not prepared.
        raise ValueError(f"{e} Prepare it once with `tfds build {name} --data_dir=<data_dir>` "
                         "(this source downloads nothing).") from e
      if size < 0:
        raise ValueError(f"unknown number of examples in {name} {split}")
      self._sizes.append(size)

  @property
  def num_examples(self) -> int:
    return sum(self._sizes)

  def shard_size(self, shard: sources.Shard) -> int:
    # tfds.even_splits splits each dataset (and each '+' part of the split) on its own.
    return sum(len(sources.even_shard(n, shard)) for n in self._sizes)

  def as_dataset(self, shuffle: bool = False, seed: int = 0, skip: int = 0,
                 shard: sources.Shard = (0, 1)) -> tf.data.Dataset:
    """One pass, in the order of the module docstring of ``sources``, with two differences.

    ``shard`` is ``tfds.even_splits(split, count)[index]`` of each dataset (near-equal contiguous
    blocks of every ``+`` part). ``shuffle=True`` is tfds' file shuffle (seeded) followed by a
    seeded ``shuffle`` buffer of 1024 examples (and a seeded interleave of several datasets): a
    deterministic permutation for a given seed, but not a uniform one. Images are decoded after
    ``skip``; skipped examples are still read from disk, undecoded.
    """
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top  (slow import)

    if skip < 0:
      raise ValueError(f"skip must be >= 0, got {skip}")
    index, count = sources.check_shard(shard)
    split = self.split if count == 1 else tfds.even_splits(self.split, n=count)[index]
    read_config = tfds.ReadConfig(shuffle_seed=seed, try_autocache=False)
    datasets = [
        b.as_dataset(split=split, shuffle_files=shuffle, read_config=read_config,
                     decoders={"image": tfds.decode.SkipDecoding()}) for b in self.builders]
    if len(datasets) == 1:
      ds = datasets[0]
    elif shuffle:
      sizes = [len(sources.even_shard(n, shard)) for n in self._sizes]
      ds = tf.data.Dataset.sample_from_datasets(
          datasets, weights=np.array(sizes) / max(sum(sizes), 1), seed=seed,
          stop_on_empty_dataset=False)
    else:
      ds = datasets[0]
      for other in datasets[1:]:
        ds = ds.concatenate(other)
    if shuffle:
      ds = ds.shuffle(_SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=False)
    return ds.skip(skip).map(_convert, num_parallel_calls=tf.data.AUTOTUNE)


@tf.autograph.experimental.do_not_convert
def _convert(ex: dict[str, Any]) -> dict[str, tf.Tensor]:
  """A tfds example (image undecoded) -> the example format of ``sources``."""
  objects = ex["objects"]
  ymin, xmin, ymax, xmax = tf.unstack(tf.reshape(objects["bbox"], [-1, 4]), axis=1)
  boxes = tf.clip_by_value(tf.stack([xmin, ymin, xmax, ymax], axis=1), 0.0, 1.0)
  keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
  no_flag = tf.zeros_like(objects["label"], tf.bool)
  image = tf.io.decode_image(ex["image"], channels=3, expand_animations=False)
  if "area" in objects:
    area = tf.cast(objects["area"], tf.float32)
  else:
    height, width = tf.unstack(tf.cast(tf.shape(image)[:2], tf.float32))
    area = (boxes[:, 2] - boxes[:, 0]) * width * (boxes[:, 3] - boxes[:, 1]) * height
  if "image/id" in ex:
    image_id = tf.strings.as_string(ex["image/id"])
  else:
    image_id = tf.strings.regex_replace(ex["image/filename"], r"\.[^.]*$", "")
  return {
      "image": image,
      "boxes": tf.boolean_mask(boxes, keep),
      "labels": tf.boolean_mask(tf.cast(objects["label"], tf.int32) + 1, keep),
      "difficult": tf.boolean_mask(objects.get("is_difficult", no_flag), keep),
      "crowd": tf.boolean_mask(objects.get("is_crowd", no_flag), keep),
      "area": tf.boolean_mask(area, keep),
      "image_id": image_id,
  }
