"""The common interface of all dataset sources, and the in-memory-annotation source behind them.

Every source yields the same **example** format, one dict per image, unaugmented and at the
original image size:

  * ``image``: ``tf.uint8 [H, W, 3]``, RGB.
  * ``boxes``: ``tf.float32 [N, 4]``, normalized xyxy ``(xmin, ymin, xmax, ymax)`` in ``[0, 1]``,
    every box with ``xmax > xmin`` and ``ymax > ymin``.
  * ``labels``: ``tf.int32 [N]`` in ``1..C``; label ``k`` is ``class_names[k - 1]`` (0 is the
    background and never appears).
  * ``difficult``, ``crowd``: ``tf.bool [N]`` (VOC "difficult", COCO ``iscrowd``; False elsewhere).
  * ``area``: ``tf.float32 [N]``, each object's area in pixels of the original image, what COCO
    evaluation sorts into its small / medium / large ranges: the annotation's ``area`` where the
    dataset has one (COCO: the segmentation area, smaller than the box's), else the box's
    ``width * height`` in pixels (continuous coordinates, after clipping to the image).
  * ``image_id``: ``tf.string`` scalar for every source (VOC ``'000005'``/``'2008_000002'``, COCO
    ``'397133'``, synthetic ``'train_000042'``).

Reading order (``Source.as_dataset(shuffle, seed, skip, shard)``):
  1. ``shard=(index, count)`` keeps the ``index``-th of ``count`` contiguous, near-equal blocks of
     the unshuffled order (like ``tfds.even_splits``: the first ``num_examples % count`` shards get
     one example more). Each process of a multi-host job passes its own
     ``(jax.process_index(), jax.process_count())``.
  2. ``shuffle=True`` permutes the shard deterministically from ``seed`` (a non-negative int64;
     pass a new seed per epoch, ``epoch_seed(seed, epoch)``).
  3. ``skip`` drops the first ``skip`` examples of that order before any image is read or decoded,
     so that resuming mid-epoch is cheap. ``skip >= len(shard)`` gives an empty dataset.
One call is one pass (one epoch); the caller repeats. Sources with random access
(``IndexedSource``: image folders, COCO JSON, synthetic) also give the endless training stream of
all epochs as one dataset, ``stream(seed, start, shard)``.
"""

import abc
import dataclasses
import logging
import os
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from ssd_jax.data import decoded as decoded_lib

logger = logging.getLogger("ssd_jax.data")

Shard = tuple[int, int]

# Boxes sticking out of the image by at most this many pixels are clipped without a warning:
# annotation tools round coordinates, and COCO boxes often exceed the border by a fraction of a px.
_SILENT_CLIP_PIXELS = 1.0
# Individual warnings per kind of annotation problem before they are only counted.
_MAX_WARNINGS_PER_KIND = 10
# The end of an endless range of stream positions.
_ENDLESS = 2**62
# At most this share of a dataset's images may be missing or unreadable: so few are skipped, each
# named in a warning; more stop the run, so that none trains on or reports metrics on a dataset
# silently shrunk (a folder whose images were renamed or moved loses most of them).
MAX_UNREADABLE_SHARE = 0.02
# Image files by extension (any case): the formats tf.io.decode_image reads.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


def even_shard(num_examples: int, shard: Shard) -> np.ndarray:
  """Indices ``[M]`` of shard ``shard = (index, count)`` of ``range(num_examples)``.

  Contiguous near-equal blocks, the first ``num_examples % count`` one longer (``tfds.even_splits``
  with ``drop_remainder=False``).
  """
  index, count = check_shard(shard)
  return np.array_split(np.arange(num_examples, dtype=np.int64), count)[index]


def epoch_seed(seed: int, epoch: int) -> int:
  """The shuffle seed of epoch ``epoch`` of the training stream of ``seed`` (both ``< 2**31``):
  ``seed * 2**32 + epoch``, whose stateless seed pair (:func:`permute`) is ``(seed, epoch)``."""
  for name, value in (("seed", seed), ("epoch", epoch)):
    if not 0 <= value < 2**31:
      raise ValueError(f"{name} must be in [0, 2**31), got {value}")
  return (int(seed) << 32) | int(epoch)


def permute(positions: tf.Tensor, size: int, seed_pair: tf.Tensor) -> tf.Tensor:
  """Where ``positions`` (int64, any shape, in ``[0, size)``) go under the random permutation of
  ``range(size)`` seeded by ``seed_pair`` (int64 ``[2]``): TF's stateless ``index_shuffle``, so an
  element is found without materializing the permutation, inside a graph."""
  return tf.random.experimental.index_shuffle(positions, seed_pair,
                                              tf.constant(size - 1, tf.int64))


def _seed_pair(seed: int) -> tf.Tensor:
  if seed < 0:
    raise ValueError(f"seed must be >= 0, got {seed}")
  return tf.constant([seed >> 32, seed & 0xFFFFFFFF], tf.int64)


def example_order(num_examples: int, shuffle: bool = False, seed: int = 0, skip: int = 0,
                  shard: Shard = (0, 1)) -> np.ndarray:
  """The example indices ``[M]`` that ``as_dataset`` reads, in order (see the module docstring)."""
  if skip < 0:
    raise ValueError(f"skip must be >= 0, got {skip}")
  order = even_shard(num_examples, shard)
  if shuffle and len(order):
    order = order[permute(tf.range(len(order), dtype=tf.int64), len(order),
                          _seed_pair(seed)).numpy()]
  return order[skip:]


def check_shard(shard: Shard) -> Shard:
  """Validates ``shard = (index, count)``; returns it as ints."""
  index, count = (int(v) for v in shard)
  if count < 1 or not 0 <= index < count:
    raise ValueError(f"shard must be (index, count) with 0 <= index < count, got {shard}")
  return index, count


class Source(abc.ABC):
  """A detection dataset: ``class_names``, ``num_examples`` and ``as_dataset``.

  Attributes:
    class_names: ``C`` names, background excluded; label ``k`` is ``class_names[k - 1]``.
    category_ids: the dataset's own ids of labels ``1..C`` (COCO category ids), or None.
  """

  class_names: list[str]
  category_ids: Optional[list[int]] = None

  @property
  @abc.abstractmethod
  def num_examples(self) -> int:
    """Number of examples (all shards)."""

  def shard_size(self, shard: Shard) -> int:
    """Number of examples in ``as_dataset(shard=shard)`` before ``skip`` (and before dropping
    unreadable images, which only reading discovers)."""
    return len(even_shard(self.num_examples, shard))

  @abc.abstractmethod
  def as_dataset(self, shuffle: bool = False, seed: int = 0, skip: int = 0,
                 shard: Shard = (0, 1)) -> tf.data.Dataset:
    """One pass over the examples (format and order in the module docstring)."""


class IndexedSource(Source):
  """A source with random access by example index: reads ``example_order(...)``, or the endless
  stream of epochs."""

  def as_dataset(self, shuffle: bool = False, seed: int = 0, skip: int = 0,
                 shard: Shard = (0, 1)) -> tf.data.Dataset:
    return self._load(tf.constant(example_order(self.num_examples, shuffle, seed, skip, shard),
                                  tf.int64))

  def stream(self, seed: int, start: int = 0, shard: Shard = (0, 1)) -> tf.data.Dataset:
    """Positions ``start, start + 1, ...`` of the endless stream of epochs, one dataset.

    Epoch ``e`` (positions ``e * M .. e * M + M - 1``, ``M = shard_size(shard)``) is
    ``as_dataset(shuffle=True, seed=epoch_seed(seed, e), shard=shard)``, its order computed in
    the graph: no image before ``start`` is read and no pipeline is rebuilt between epochs.
    Unreadable images are skipped with a warning (which shortens their epoch); an epoch with no
    readable image is an error rather than an endless loop.
    """
    shard_indices = even_shard(self.num_examples, shard)
    size = len(shard_indices)
    if size == 0:
      raise ValueError(f"shard {shard} has no examples ({self.num_examples} in all)")
    first_epoch, skip = divmod(start, size)
    epoch_seed(seed, first_epoch)  # Validates both: the seed pair of epoch e is (seed, e).
    first, seed_t = int(shard_indices[0]), tf.constant(seed, tf.int64)  # Shards are contiguous.

    # Graph code without Python control flow: autograph's source transformation (seconds at
    # every start-up, for this function and everything it calls) is skipped.
    @tf.autograph.experimental.do_not_convert
    def epoch(epoch_and_skip):
      e, skip_in_epoch = tf.unstack(epoch_and_skip)
      positions = tf.range(skip_in_epoch, size, dtype=tf.int64)
      return self._load(first + permute(positions, size, tf.stack([seed_t, e])))

    # (epoch, skip) pairs: (first_epoch, skip), then (e, 0) for every later epoch.
    later = tf.data.Dataset.range(first_epoch + 1, _ENDLESS).map(
        tf.autograph.experimental.do_not_convert(lambda e: tf.stack([e, 0 * e])))
    return tf.data.Dataset.from_tensors(tf.constant([first_epoch, skip], tf.int64)).concatenate(
        later).flat_map(epoch)

  @abc.abstractmethod
  def _load(self, order: tf.Tensor) -> tf.data.Dataset:
    """The examples of the indices ``order`` (int64 ``[M]``, possibly a graph tensor), in that
    order."""


@dataclasses.dataclass(frozen=True)
class Record:
  """The annotation of one image on disk (everything but the pixels).

  Attributes:
    image_path: path of the encoded image (JPEG, PNG, BMP or GIF).
    image_id: identifier, e.g. ``'000005'`` (VOC) or ``'397133'`` (COCO).
    boxes: ``[N, 4]`` float32, normalized xyxy.
    labels: ``[N]`` int32 in ``1..C``.
    difficult: ``[N]`` bool.
    crowd: ``[N]`` bool.
    area: ``[N]`` float32, pixels of the original image (see the module docstring).
  """
  image_path: str
  image_id: str
  boxes: np.ndarray
  labels: np.ndarray
  difficult: np.ndarray
  crowd: np.ndarray
  area: np.ndarray


class RecordSource(IndexedSource):
  """Images on disk with annotations parsed eagerly into ``records``; pixels are read lazily.

  A dataset whose decoded images fit in ``cache_bytes`` is decoded once, when its training
  stream is first made (:mod:`ssd_jax.data.decoded`), and every later pass reads the pixels from
  memory. An image that cannot be read or decoded (missing, truncated, not an image) is skipped
  with a warning naming the file and the number skipped so far; the pass continues.
  """

  def __init__(self, records: Sequence[Record], class_names: Sequence[str],
               cache_bytes: int = decoded_lib.DEFAULT_BUDGET_BYTES):
    self.records = tuple(records)
    self.class_names = list(class_names)
    self.cache_bytes = cache_bytes
    self._decoded: Optional[decoded_lib.Decoded] = None
    counts = [len(r.labels) for r in self.records]
    # Flat annotation arrays + row splits, captured by reference (not as graph constants) in the
    # tf.data functions below; an example is a slice [splits[i], splits[i + 1]).
    self._splits = tf.constant(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))
    self._paths = tf.constant([r.image_path for r in self.records], tf.string)
    self._ids = tf.constant([r.image_id for r in self.records], tf.string)

    def flat(field, dtype, shape):
      parts = [getattr(r, field).astype(dtype).reshape(shape) for r in self.records]
      return tf.constant(np.concatenate(parts) if parts else np.zeros(shape, dtype))

    self._boxes = flat("boxes", np.float32, (-1, 4) if self.records else (0, 4))
    self._labels = flat("labels", np.int32, (-1,) if self.records else (0,))
    self._difficult = flat("difficult", bool, (-1,) if self.records else (0,))
    self._crowd = flat("crowd", bool, (-1,) if self.records else (0,))
    self._area = flat("area", np.float32, (-1,) if self.records else (0,))

  @property
  def num_examples(self) -> int:
    return len(self.records)

  @property
  def cached(self) -> bool:
    """Whether the images are held decoded in memory."""
    return self._decoded is not None

  def stream(self, seed: int, start: int = 0, shard: Shard = (0, 1)) -> tf.data.Dataset:
    if self._decoded is None:
      paths = [r.image_path for r in self.records]
      size = decoded_lib.decoded_bytes(paths, self.cache_bytes)
      if size is not None and size <= self.cache_bytes:
        self._decoded = decoded_lib.decode_all(paths)
        unreadable = [paths[i] for i in self._decoded.unreadable]
        check_unreadable(len(unreadable), len(paths), "training images", unreadable)
        logger.info("Decoded the %d images (%.0f MB) into memory once, for all epochs%s.",
                    len(paths), size / 2**20, f"; {len(self._decoded.unreadable)} unreadable"
                    if self._decoded.unreadable else "")
    return super().stream(seed, start, shard)

  def _load(self, order: tf.Tensor) -> tf.data.Dataset:
    num = tf.size(order, out_type=tf.int64)
    decoded = self._decoded

    # Plain graph code (explicit tf.cond): autograph's source transformation is skipped.
    @tf.autograph.experimental.do_not_convert
    def load(position):
      i = order[position]
      start, stop = self._splits[i], self._splits[i + 1]
      image = decoded.image(i) if decoded is not None else tf.io.decode_image(
          tf.io.read_file(self._paths[i]), channels=3, expand_animations=False)
      return {
          "image": image,
          "boxes": self._boxes[start:stop],
          "labels": self._labels[start:stop],
          "difficult": self._difficult[start:stop],
          "crowd": self._crowd[start:stop],
          "area": self._area[start:stop],
          "image_id": self._ids[i],
          "position": position,
      }

    # An unreadable image fails its map element, which ignore_errors drops. The positions that
    # come out then have gaps, which the scan finds (a sentinel at position `num` reveals a gap at
    # the end) and `report` names. deterministic=True keeps positions in order even when the
    # caller's tf.data options allow reordering.
    ds = tf.data.Dataset.range(num).map(load, num_parallel_calls=tf.data.AUTOTUNE,
                                        deterministic=True).ignore_errors()
    sentinel = tf.nest.map_structure(
        lambda spec: tf.zeros([0 if d is None else d for d in spec.shape], spec.dtype),
        ds.element_spec)
    ds = ds.concatenate(tf.data.Dataset.from_tensors({**sentinel, "position": num}))
    ds = ds.scan(tf.constant(0, tf.int64), tf.autograph.experimental.do_not_convert(
        lambda expected, ex: (ex["position"] + 1, {**ex, "expected": expected})))
    skipped = [0]

    def report(missing, whole_pass) -> bool:
      for i in missing.numpy():
        skipped[0] += 1
        logger.warning("Skipping unreadable or corrupt image %s (%d skipped so far by this "
                       "dataset).", self.records[i].image_path, skipped[0])
      if whole_pass:
        raise ValueError(f"none of the {len(missing)} images of this pass could be read (the "
                         f"first: {self.records[missing[0]].image_path})")
      return True

    @tf.autograph.experimental.do_not_convert
    def keep(ex):
      def log_gap():
        missing = order[ex["expected"]:ex["position"]]
        whole = tf.logical_and(ex["expected"] == 0, ex["position"] == num)
        result = tf.py_function(report, [missing, whole], tf.bool)
        result.set_shape([])
        return result

      logged = tf.cond(ex["position"] > ex["expected"], log_gap, lambda: tf.constant(True))
      return tf.logical_and(logged, ex["position"] < num)

    return ds.filter(keep).map(tf.autograph.experimental.do_not_convert(
        lambda ex: {k: v for k, v in ex.items() if k not in ("position", "expected")}))


def check_unreadable(num_bad: int, num_images: int, where: str,
                     examples: Sequence[str] = ()) -> None:
  """Raises a ValueError giving the count and naming a few ``examples`` (image paths; none: the
  warnings logged name them) if ``num_bad`` is more than :data:`MAX_UNREADABLE_SHARE` of the
  ``num_images`` images of ``where``."""
  if num_bad > MAX_UNREADABLE_SHARE * num_images:
    named = (f"e.g. {', '.join(list(examples)[:3])}" if examples else
             "named in the warnings above")
    raise ValueError(
        f"{where}: {num_bad} of {num_images} images cannot be found or read (more than "
        f"{MAX_UNREADABLE_SHARE:.0%}), {named}. Check that the image files are where the "
        "annotations say (names and extensions) and that they decode.")


def drop_missing_images(records: Sequence[Record], where: str) -> list[Record]:
  """``records`` without those whose image file does not exist: each is named in a warning; more
  than :data:`MAX_UNREADABLE_SHARE` of them is a ValueError (:func:`check_unreadable`)."""
  missing = [r.image_path for r in records if not os.path.isfile(r.image_path)]
  check_unreadable(len(missing), len(records), where, missing)
  for path in missing:
    logger.warning("%s: image %s not found; its annotation is skipped (%d of %d images).", where,
                   path, len(missing), len(records))
  return [r for r in records if os.path.isfile(r.image_path)] if missing else list(records)


class AnnotationIssues:
  """Logs annotation problems found while parsing: the first few of each kind, then a count."""

  def __init__(self):
    self.counts: dict[str, int] = {}

  def warn(self, kind: str, message: str):
    self.counts[kind] = self.counts.get(kind, 0) + 1
    if self.counts[kind] <= _MAX_WARNINGS_PER_KIND:
      logger.warning(message)

  def summarize(self, where: str):
    for kind, count in self.counts.items():
      if count > _MAX_WARNINGS_PER_KIND:
        logger.warning("%s: %d boxes %s in total.", where, count, kind)


def normalize_pixel_boxes(boxes: np.ndarray, width: float, height: float, where: str,
                          object_names: Sequence[str],
                          issues: AnnotationIssues) -> tuple[np.ndarray, np.ndarray]:
  """Validates pixel boxes and normalizes them by the image size.

  Args:
    boxes: ``[N, 4]`` xyxy in continuous pixel coordinates (0 = left/top image border).
    width: image width in pixels (> 0).
    height: image height in pixels (> 0).
    where: the annotation file (and image) for messages.
    object_names: ``N`` names of the boxes for messages (e.g. ``"object 2 ('dog')"``).
    issues: collects the warnings.

  Returns:
    ``([K, 4] float32 normalized xyxy, [N] bool keep)``. A box with a non-finite coordinate or
    ``xmax <= xmin`` or ``ymax <= ymin`` is dropped with a warning; a box exceeding the image by
    more than one pixel is clipped to it with a warning (by less: clipped silently) and dropped
    with a warning if nothing is left.
  """
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
  keep = np.ones(len(boxes), bool)
  limits = np.array([width, height, width, height])
  clipped = np.clip(boxes, 0.0, limits)
  for k, (box, name) in enumerate(zip(boxes, object_names)):
    if not np.all(np.isfinite(box)):
      issues.warn("dropped (non-finite)", f"{where}: {name} has non-finite box {box.tolist()}; "
                  "dropped.")
      keep[k] = False
    elif box[2] <= box[0] or box[3] <= box[1]:
      issues.warn("dropped (empty)", f"{where}: {name} has xmax <= xmin or ymax <= ymin "
                  f"(xyxy {box.tolist()}); dropped.")
      keep[k] = False
    elif clipped[k, 2] <= clipped[k, 0] or clipped[k, 3] <= clipped[k, 1]:
      issues.warn("dropped (outside)", f"{where}: {name} box {box.tolist()} lies outside the "
                  f"{width:g}x{height:g} image; dropped.")
      keep[k] = False
    elif np.max(np.abs(clipped[k] - box)) > _SILENT_CLIP_PIXELS:
      issues.warn("clipped", f"{where}: {name} box {box.tolist()} exceeds the {width:g}x"
                  f"{height:g} image; clipped to {clipped[k].tolist()}.")
  return (clipped[keep] / limits).astype(np.float32), keep


def pixel_box_areas(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
  """``[N]`` float32 ``w * h`` of pixel xyxy ``boxes`` ``[N, 4]`` clipped to the image, as
  :func:`normalize_pixel_boxes` clips them (the ``area`` of datasets without one)."""
  clipped = np.clip(np.asarray(boxes, np.float64).reshape(-1, 4), 0.0,
                    [width, height, width, height])
  return ((clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])).astype(np.float32)


def check_class_names(source: Source, class_names: Sequence[str] | None, where: str) -> Source:
  """``source``, after checking that its classes are ``class_names`` (None: any)."""
  if class_names is not None and list(source.class_names) != list(class_names):
    raise ValueError(f"{where} has classes {list(source.class_names)}, but the training data "
                     f"(the run's label map) has {list(class_names)}")
  return source
