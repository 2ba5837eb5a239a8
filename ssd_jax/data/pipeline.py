"""Input pipelines: infinite, exactly resumable training batches and padded evaluation batches.

Batches are dicts of NumPy arrays with fixed shapes, ``b = batch_size // process_count`` examples
per process (each process reads its own shard of the source):

  * ``image``: uint8 ``[b, S, S, 3]`` RGB (the model normalizes pixel values).
  * ``boxes``: float32 ``[b, max_boxes, 4]`` normalized xyxy, zero rows for padding.
  * ``labels``: int32 ``[b, max_boxes]`` in ``1..C``, 0 for padding.
  * ``difficult``, ``crowd``: bool ``[b, max_boxes]``, False for padding.
Training batches with photometric distortion (``AugmentConfig.photometric``) add its random
values, float32 ``photometric`` ``[b, ssd_jax.photometric.NUM_PARAMS]``, and each image's
``footprint``, int32 ``[b, 4]`` (the pixels to distort, see ``augment.resize_window``): the train
step distorts the images (``ssd_jax.photometric.distort``). Evaluation batches add ``mask``
bool ``[b]`` (real example or padding), ``orig_size`` int32 ``[b, 2]`` (height, width of the
original image), ``image_id`` (str ``[b]``) and ``area`` float32 ``[b, max_boxes]`` (each object's
area in pixels of the original image, see ``sources``; 0 for padding); their boxes are the
ground truth of the original image (normalized, so unaffected by the resize). Training batches
have no ``area``: it would not follow the augmented boxes.

An image with more than ``max_boxes`` objects keeps its first ``max_boxes`` (source order, after
augmentation) and a warning is logged once per pipeline; raise ``max_boxes`` to keep them all.

Training order and resumption. Process ``i`` of ``n`` reads shard ``(i, n)`` of the source as an
endless stream, epoch ``e`` being ``source.as_dataset(shuffle=True,
seed=sources.epoch_seed(seed, e))``. Example ``p`` of that stream (``p = e * shard_size +
position in epoch``) is augmented with a seed derived from ``(seed, i, p)``, never from iterator
state, so ``start_step=k`` starts at ``p = k * b`` (without reading the images before it) and
yields exactly the batches an uninterrupted iterator yields from step ``k`` on. (A source that
skips unreadable images shortens that epoch, which shifts the rest of it; a warning names each.)
Sources with random access (``sources.IndexedSource``) give the whole stream as one tf.data
pipeline; others (tfds) one pipeline per epoch, each prepared while the previous one is read.

TensorFlow is kept off the GPUs (JAX owns them); jax is only asked for the process index and
count when they are not given.
"""

import concurrent.futures
import dataclasses
import functools
import itertools
import logging
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, Union

import numpy as np
import tensorflow as tf

from ssd_jax.data import augment as augment_lib
from ssd_jax.data import sources

logger = logging.getLogger("ssd_jax.data")

Batch = dict[str, np.ndarray]
AugmentArg = Union[augment_lib.AugmentConfig, Mapping[str, Any], None]

_OBJECT_PAD_VALUES = {"boxes": 0.0, "labels": 0, "difficult": False, "crowd": False,
                      "area": 0.0}
# Object fields of training batches: every one but ``area`` (see the module docstring).
_TRAIN_OBJECT_KEYS = ("boxes", "labels", "difficult", "crowd")


def _hide_gpus_from_tf() -> None:
  """Keeps TensorFlow from reserving GPU memory that JAX needs."""
  try:
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError:  # TF already initialized its devices; nothing left to do.
    pass


_hide_gpus_from_tf()


def _process_shard(process_index: Optional[int], process_count: Optional[int]) -> tuple[int, int]:
  if process_index is None or process_count is None:
    import jax  # pylint: disable=g-import-not-at-top  (only needed for the defaults)
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  if process_count < 1 or not 0 <= process_index < process_count:
    raise ValueError(f"need 0 <= process_index < process_count, got process_index={process_index}"
                     f", process_count={process_count}")
  return int(process_index), int(process_count)


def _per_process_batch(batch_size: int, process_count: int) -> int:
  if batch_size < 1 or batch_size % process_count:
    raise ValueError(f"batch_size={batch_size} must be a positive multiple of the process count "
                     f"({process_count})")
  return batch_size // process_count


def _derived_seed(*values: int) -> int:
  """A well-mixed non-negative 31-bit int from a tuple of non-negative ints."""
  return int(np.random.SeedSequence(values).generate_state(1)[0] >> 1)


def pad_objects(example: augment_lib.Example, max_boxes: int,
                keys: Sequence[str] = tuple(_OBJECT_PAD_VALUES)) -> dict:
  """Pads (or truncates) the per-object fields ``keys`` of an example to ``max_boxes`` rows.

  Args:
    example: with ``boxes`` ``[N, 4]`` and the other ``keys`` (of ``labels``, ``difficult``,
      ``crowd``, ``area``) ``[N]``.
    max_boxes: rows of the output.
    keys: the object fields to pad, all of them by default.

  Returns:
    The example with ``boxes`` ``[max_boxes, 4]`` and the other ``keys`` ``[max_boxes]``;
    padding rows are zero / False (label 0 = padding).
  """
  missing = [key for key in keys if key not in example]
  if missing:
    raise ValueError(f"example lacks the object fields {missing} (keys: {sorted(example)})")
  out = dict(example)
  for key in keys:
    pad_value = _OBJECT_PAD_VALUES[key]
    values = example[key][:max_boxes]
    paddings = [[0, max_boxes - tf.shape(values)[0]]] + [[0, 0]] * (values.shape.rank - 1)
    padded = tf.pad(values, paddings, constant_values=tf.constant(pad_value, values.dtype))
    out[key] = tf.ensure_shape(padded, [max_boxes] + values.shape[1:].as_list())
  return out


def _warn_if_truncated(example: dict, num_objects: tf.Tensor, warn_once: "_WarnOnce") -> dict:
  """``example`` (tensors) made to depend on ``warn_once``'s op, run for ``num_objects`` (the
  objects before :func:`pad_objects`) above its ``max_boxes``."""
  warned = tf.cond(num_objects > warn_once.max_boxes, lambda: warn_once(num_objects),
                   lambda: tf.constant(False))
  with tf.control_dependencies([warned]):  # Makes sure the warning op runs.
    return {key: tf.identity(value) for key, value in example.items()}


@dataclasses.dataclass
class _WarnOnce:
  """Graph op factory logging the first image with more than ``max_boxes`` objects."""
  max_boxes: int
  what: str
  warned: bool = False

  def _log(self, num):
    if not self.warned:
      self.warned = True
      logger.warning("An image has %d objects but max_boxes=%d: %s keeps the first %d (warned "
                     "once). Raise max_boxes to keep them all.", int(num), self.max_boxes,
                     self.what, self.max_boxes)
    return np.zeros((), np.bool_)

  def __call__(self, num: tf.Tensor) -> tf.Tensor:
    flag = tf.py_function(self._log, [num], tf.bool)
    flag.set_shape([])
    return flag


def _augment_config(augment: AugmentArg) -> augment_lib.AugmentConfig:
  if augment is None:
    return augment_lib.AugmentConfig.none()
  if isinstance(augment, augment_lib.AugmentConfig):
    return augment
  return augment_lib.AugmentConfig(**dict(augment))


@functools.lru_cache(maxsize=8)
def _train_preprocess_fn(train_preprocess: Callable, image_size: int,
                         config: augment_lib.AugmentConfig, max_boxes: int) -> Callable:
  """``(seed base, position, example) -> (padded example, objects before padding)``, the map
  function of the training pipelines of these arguments.

  One tf.function per process and arguments (``train_preprocess`` is an argument so that a
  benchmark can swap it), so that pipelines started with the same arguments in one process (the
  blocks of one run, the runs of a sweep, of ``train.train_stacked`` or of a notebook) trace the
  augmentation's graph once: building the tiny config's pipeline again took 1.0-1.2 CPU-s
  with its own trace, 0.5-0.6 with this one. The graph code uses tf.cond explicitly:
  autograph would only re-parse its source, which takes seconds. The truncation warning stays
  per pipeline (:func:`_warn_if_truncated`, outside).
  """
  keys = ("image", *_TRAIN_OBJECT_KEYS) + (("photometric", "footprint") if config.photometric
                                           else ())

  @tf.function(autograph=False)
  def preprocess(seed_base, position, example):
    example = train_preprocess(example, tf.stack([seed_base, position]), image_size, config)
    num_objects = tf.shape(example["boxes"])[0]
    example = pad_objects(example, max_boxes, _TRAIN_OBJECT_KEYS)
    return {key: example[key] for key in keys}, num_objects

  return preprocess


def train_iterator(source, *, image_size: int, batch_size: int, max_boxes: int, seed: int,
                   augment: AugmentArg = augment_lib.AugmentConfig(), start_step: int = 0,
                   process_index: Optional[int] = None,
                   process_count: Optional[int] = None) -> Iterator[Batch]:
  """Endless NumPy training batches of this process (see the module docstring).

  Args:
    source: a dataset source (``shard_size(shard)``, ``as_dataset(shuffle, seed, skip, shard)``).
    image_size: side of the square model input, pixels.
    batch_size: global batch size (all processes together).
    max_boxes: object rows per example.
    seed: global seed of the shuffling and the augmentation.
    augment: ``AugmentConfig`` (or a mapping of its fields); ``None`` only resizes.
    start_step: first step to yield (resumption).
    process_index: this process; default ``jax.process_index()``.
    process_count: number of processes; default ``jax.process_count()``.

  Returns:
    An iterator of batches with ``image``, ``boxes``, ``labels``, ``difficult``, ``crowd`` (and
    ``photometric``, ``footprint`` with photometric distortion) of
    ``batch_size // process_count`` examples each.

  Raises:
    ValueError: for an invalid argument or a process whose shard is empty.
  """
  _hide_gpus_from_tf()
  config = _augment_config(augment)
  process_index, process_count = _process_shard(process_index, process_count)
  local_batch = _per_process_batch(batch_size, process_count)
  if start_step < 0:
    raise ValueError(f"start_step must be >= 0, got {start_step}")
  if max_boxes < 1:
    raise ValueError(f"max_boxes must be >= 1, got {max_boxes}")
  shard = (process_index, process_count)
  epoch_size = source.shard_size(shard)
  if epoch_size < 1:
    raise ValueError(f"shard {shard} of the source has no examples ({source.num_examples} in all)")
  example_seed_base = tf.constant(_derived_seed(seed, process_index, 1), tf.int64)
  warn_once = _WarnOnce(max_boxes, "training")
  augment_fn = _train_preprocess_fn(augment_lib.train_preprocess, image_size, config, max_boxes)

  @tf.autograph.experimental.do_not_convert
  def preprocess(position, example):
    example, num_objects = augment_fn(example_seed_base, position, example)
    return _warn_if_truncated(example, num_objects, warn_once)

  def pipeline(positioned: tf.data.Dataset) -> Iterator[Batch]:
    ds = positioned.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(local_batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    iterator = ds.with_options(_deterministic_options()).as_numpy_iterator()
    first = next(iterator, None)  # Starts the pipeline (in the background, see below).
    return itertools.chain([] if first is None else [first], iterator)

  start = start_step * local_batch
  if isinstance(source, sources.IndexedSource):
    # A generator, like the per-epoch path below: the pipeline starts at the first next() and
    # close() releases it.
    def endless() -> Iterator[Batch]:
      yield from pipeline(tf.data.Dataset.zip(tf.data.Dataset.counter(start),
                                              source.stream(seed, start, shard)))

    return endless()

  # Other sources build an epoch from a Python seed, so epochs cannot be chained inside one
  # graph: the stream is read in blocks of about one epoch of whole batches, one pipeline each.
  block_size = local_batch * -(-epoch_size // local_batch)

  def batches() -> Iterator[Batch]:
    # Creating a tf.data iterator and destroying it take up to a second each (its graph is
    # optimized and instantiated, then torn down): a worker thread prepares the next block and
    # drops the finished one while the current block is consumed.
    block = lambda position: pipeline(
        _stream_slice(source, shard, seed, epoch_size, position, block_size))
    starts = itertools.count(start, block_size)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as executor:
      upcoming = executor.submit(block, next(starts))
      while True:
        current = [upcoming.result()]
        upcoming = executor.submit(block, next(starts))
        yield from current[0]
        executor.submit(current.clear)  # The last reference: destroyed in the worker.

  return batches()


def _stream_slice(source, shard: tuple[int, int], seed: int, epoch_size: int, start: int,
                  length: int) -> tf.data.Dataset:
  """``(position, example)`` for positions ``start .. start + length - 1`` of the endless stream
  (see the module docstring); a slice starting mid-epoch uses the source's ``skip``."""
  pieces = []
  position, stop = start, start + length
  while position < stop:
    epoch, skip = divmod(position, epoch_size)
    take = min(epoch_size - skip, stop - position)
    examples = source.as_dataset(shuffle=True, seed=sources.epoch_seed(seed, epoch), skip=skip,
                                 shard=shard).take(take)
    pieces.append(tf.data.Dataset.zip(tf.data.Dataset.counter(position), examples))
    position += take
  return functools.reduce(tf.data.Dataset.concatenate, pieces)


def eval_dataset(source, *, image_size: int, batch_size: int, max_boxes: int,
                 process_index: Optional[int] = None,
                 process_count: Optional[int] = None) -> tf.data.Dataset:
  """One unshuffled, unaugmented pass over this process's shard, in padded batches.

  Every process yields the same number of batches, ``ceil(largest shard / b)``, so that collective
  evaluation steps stay in lockstep; rows beyond the shard (and in place of images the source
  skipped as unreadable) have ``mask`` False, zero images and no objects.

  Args:
    source: a dataset source.
    image_size: side of the square model input, pixels.
    batch_size: global batch size; ``b = batch_size // process_count`` per process.
    max_boxes: ground-truth rows per example (objects beyond are dropped with a warning, which
      would bias the metrics: set it to at least the most objects in one image).
    process_index: this process; default ``jax.process_index()``.
    process_count: number of processes; default ``jax.process_count()``.

  Returns:
    A finite dataset of batches with ``image``, ``boxes``, ``labels``, ``difficult``, ``crowd``,
    ``area``, ``mask``, ``orig_size`` and ``image_id`` (tf.string).
  """
  _hide_gpus_from_tf()
  process_index, process_count = _process_shard(process_index, process_count)
  local_batch = _per_process_batch(batch_size, process_count)
  shard = (process_index, process_count)
  largest_shard = max(source.shard_size((i, process_count)) for i in range(process_count))
  num_batches = -(-largest_shard // local_batch)
  warn_once = _WarnOnce(max_boxes, "evaluation (the metrics will miss the rest)")

  @tf.autograph.experimental.do_not_convert
  def preprocess(example):
    example = augment_lib.eval_preprocess(example, image_size)
    num_objects = tf.shape(example["boxes"])[0]
    example = pad_objects(example, max_boxes)
    example = {key: example[key] for key in ("image", "orig_size", "image_id",
                                             *_OBJECT_PAD_VALUES)}
    example["mask"] = tf.constant(True)
    return _warn_if_truncated(example, num_objects, warn_once)

  ds = source.as_dataset(shuffle=False, shard=shard)
  ds = ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  filler = tf.nest.map_structure(lambda spec: tf.zeros(spec.shape, spec.dtype), ds.element_spec)
  ds = ds.concatenate(tf.data.Dataset.from_tensors(filler).repeat())
  ds = ds.take(num_batches * local_batch).batch(local_batch).prefetch(tf.data.AUTOTUNE)
  return ds.with_options(_deterministic_options())


def eval_iterator(source, **kwargs) -> Iterator[Batch]:
  """NumPy batches of :func:`eval_dataset` (same arguments), ``image_id`` decoded to str."""
  for batch in eval_dataset(source, **kwargs).as_numpy_iterator():
    batch["image_id"] = np.array([i.decode() for i in batch["image_id"]])
    yield batch


def _deterministic_options() -> tf.data.Options:
  options = tf.data.Options()
  options.deterministic = True
  return options
