"""Tests of ssd_jax.data.pipeline: batch format, exact resumption, sharding, evaluation padding."""

import itertools
import logging

import numpy as np
import pytest
import tensorflow as tf

from ssd_jax import data, photometric
from ssd_jax.data import pipeline

SIZE = 16


class CountingSource:
  """Example ``i``: a 12x16 image filled with the value ``i`` (so a resized copy tells which
  example it is), ``i % 5`` boxes with labels ``1..``, ``difficult`` on odd boxes, ``crowd`` on
  even examples. Ordering and sharding follow ``data.example_order`` like the real sources."""

  class_names = ["a", "b", "c", "d", "e"]

  def __init__(self, num_examples):
    self.num_examples = num_examples

  def shard_size(self, shard):
    return len(data.example_order(self.num_examples, shard=shard))

  @staticmethod
  def objects(i):
    k = np.arange(i % 5)
    boxes = np.stack([0.1 * k, 0.2 + 0 * k, 0.1 * k + 0.5, 0.9 + 0 * k], 1).astype(np.float32)
    return boxes.reshape(-1, 4), (k + 1).astype(np.int32), k % 2 == 1, np.full(len(k), i % 2 == 0)

  def _example(self, i):
    boxes, labels, difficult, crowd = tf.numpy_function(
        self.objects, [i], [tf.float32, tf.int32, tf.bool, tf.bool])
    boxes = tf.ensure_shape(boxes, [None, 4])
    return {
        "image": tf.fill([12, 16, 3], tf.cast(i, tf.uint8)),
        "boxes": boxes,
        "labels": tf.ensure_shape(labels, [None]),
        "difficult": tf.ensure_shape(difficult, [None]),
        "crowd": tf.ensure_shape(crowd, [None]),
        "area": (boxes[:, 2] - boxes[:, 0]) * 16 * (boxes[:, 3] - boxes[:, 1]) * 12,
        "image_id": tf.strings.as_string(i),
    }

  def as_dataset(self, shuffle=False, seed=0, skip=0, shard=(0, 1)):
    order = data.example_order(self.num_examples, shuffle, seed, skip, shard)
    return tf.data.Dataset.from_tensor_slices(order).map(self._example)


def train_batches(source, num, **kwargs):
  kwargs = {"image_size": SIZE, "batch_size": 4, "max_boxes": 3, "seed": 0, "process_index": 0,
            "process_count": 1, **kwargs}
  return list(itertools.islice(pipeline.train_iterator(source, **kwargs), num))


def example_ids(batch):
  """The example index of every row of a batch of CountingSource (unaugmented) images."""
  images = batch["image"]
  assert np.all(images == images[:, :1, :1, :1])  # constant images stay constant
  return images[:, 0, 0, 0].astype(int).tolist()


def check_padding(batch, max_boxes):
  labels, boxes = batch["labels"], batch["boxes"]
  assert boxes.shape == labels.shape + (4,) and labels.shape[1] == max_boxes
  real = labels > 0
  # Real rows come first; padding rows are all zero / False.
  assert np.all(np.sort(real, axis=1)[:, ::-1] == real)
  assert np.all(boxes[~real] == 0)
  assert not np.any(batch["difficult"][~real]) and not np.any(batch["crowd"][~real])


# ----------------------------------------------------------------------------------------------
# Training.
# ----------------------------------------------------------------------------------------------


def test_train_batch_format_with_augmentation():
  batches = train_batches(data.synthetic("train", num_examples=12, image_size=48, max_objects=5),
                          3, max_boxes=5)
  for batch in batches:
    assert batch["image"].shape == (4, SIZE, SIZE, 3) and batch["image"].dtype == np.uint8
    assert batch["boxes"].dtype == np.float32 and batch["labels"].dtype == np.int32
    assert batch["difficult"].dtype == bool and batch["crowd"].dtype == bool
    assert set(batch) == {"image", "boxes", "labels", "difficult", "crowd", "photometric",
                          "footprint"}
    assert batch["photometric"].shape == (4, photometric.NUM_PARAMS)
    assert batch["photometric"].dtype == np.float32
    assert batch["footprint"].shape == (4, 4) and batch["footprint"].dtype == np.int32
    assert np.all((batch["footprint"][:, :2] >= 0) & (batch["footprint"][:, 2:] <= SIZE))
    assert np.all(batch["footprint"][:, 2:] > batch["footprint"][:, :2])
    check_padding(batch, 5)
    real = batch["boxes"][batch["labels"] > 0]
    assert np.all((real >= 0) & (real <= 1))
    assert np.all(real[:, 2:] - real[:, :2] >= 1e-3)
  assert sum(np.count_nonzero(b["labels"]) for b in batches) > 0


@pytest.mark.parametrize("num_examples", [10, 3])  # 3: a dataset smaller than one batch
def test_train_epochs_are_shuffled_permutations_with_their_objects(num_examples):
  source = CountingSource(num_examples)
  batches = train_batches(source, num_examples, augment=None)  # 4 epochs in batches of 4
  ids = sum((example_ids(b) for b in batches), [])
  epochs = [ids[k:k + num_examples] for k in range(0, 4 * num_examples, num_examples)]
  for epoch in epochs:
    assert sorted(epoch) == list(range(num_examples))
  assert len({tuple(e) for e in epochs}) > 1  # a new order every epoch (3! = 6 orders)
  for batch in batches:
    check_padding(batch, 3)
    for row, i in enumerate(example_ids(batch)):
      boxes, labels, difficult, crowd = source.objects(i)
      n = min(len(labels), 3)  # at most max_boxes kept
      np.testing.assert_array_equal(batch["labels"][row, :n], labels[:n])
      np.testing.assert_allclose(batch["boxes"][row, :n], boxes[:n], atol=1e-6)
      np.testing.assert_array_equal(batch["difficult"][row, :n], difficult[:n])
      np.testing.assert_array_equal(batch["crowd"][row, :n], crowd[:n])


def test_train_resume_is_exact():
  source = data.synthetic("train", num_examples=10, image_size=32)
  reference = train_batches(source, 7, seed=3)
  # Step 3 starts at example 12: epoch 1, 2 examples in (the source's skip).
  for start in (3, 5):
    resumed = train_batches(source, 7 - start, seed=3, start_step=start)
    for got, want in zip(resumed, reference[start:]):
      for key in want:
        np.testing.assert_array_equal(got[key], want[key], f"start_step={start}, {key}")
  other_seed = train_batches(source, 1, seed=4)
  assert not np.array_equal(other_seed[0]["image"], reference[0]["image"])


class WithoutRandomAccess:
  """A source seen only through ``as_dataset`` (like tfds): the pipeline reads it one epoch per
  tf.data pipeline instead of the one endless pipeline of an ``IndexedSource``."""

  def __init__(self, source):
    self.source, self.class_names = source, source.class_names
    self.num_examples = source.num_examples

  def shard_size(self, shard):
    return self.source.shard_size(shard)

  def as_dataset(self, **kwargs):
    return self.source.as_dataset(**kwargs)


# 9 examples: shards of 5 + 4, batches of 2 per process; 3: shards of 2 + 1, smaller than a batch.
@pytest.mark.parametrize("start_step,process_index,num_examples", [(0, 0, 9), (4, 1, 9),
                                                                   (3, 1, 3)])
def test_one_endless_pipeline_equals_one_pipeline_per_epoch(start_step, process_index,
                                                            num_examples):
  source = data.synthetic("train", num_examples=num_examples, image_size=32)
  kwargs = dict(seed=5, start_step=start_step, batch_size=4, process_index=process_index,
                process_count=2)
  assert isinstance(source, data.sources.IndexedSource)
  num = 6 if num_examples == 9 else 3  # crosses epochs (2 or 3 batches each; or 2 per batch)
  endless = train_batches(source, num, **kwargs)
  per_epoch = train_batches(WithoutRandomAccess(source), num, **kwargs)
  for step, (a, b) in enumerate(zip(endless, per_epoch)):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key], f"step {start_step + step}, {key}")


def test_two_processes_read_disjoint_shards_covering_the_epoch():
  source = CountingSource(11)  # shards of 6 and 5 examples
  seen = []
  for index, shard_size in ((0, 6), (1, 5)):
    batches = train_batches(source, 6, augment=None, batch_size=4, process_index=index,
                            process_count=2)
    assert batches[0]["image"].shape[0] == 2  # per-process batch
    ids = sum((example_ids(b) for b in batches), [])
    assert sorted(ids[:shard_size]) == sorted(ids[shard_size:2 * shard_size])  # next epoch
    seen.append(set(ids[:shard_size]))
  assert not seen[0] & seen[1]
  assert seen[0] | seen[1] == set(range(11))


def test_default_process_is_jax_process():
  batches = train_batches(CountingSource(4), 1, process_index=None, process_count=None)
  assert batches[0]["image"].shape[0] == 4


def test_too_many_boxes_warns_once_per_pipeline(caplog):
  """Once per pipeline, also for a second one of the same arguments (which reuses the first's
  traced augmentation), and the same batches from both."""
  with caplog.at_level(logging.WARNING, logger="ssd_jax.data"):
    first = train_batches(CountingSource(10), 5, augment=None, max_boxes=2)
    warnings = [r for r in caplog.records if "max_boxes=2" in r.getMessage()]
    assert len(warnings) == 1
    cache_info = pipeline._train_preprocess_fn.cache_info  # pylint: disable=protected-access
    hits = cache_info().hits
    second = train_batches(CountingSource(10), 5, augment=None, max_boxes=2)
    assert cache_info().hits == hits + 1
  warnings = [r for r in caplog.records if "max_boxes=2" in r.getMessage()]
  assert len(warnings) == 2
  for a, b in zip(first, second):
    assert a.keys() == b.keys()
    for key in a:
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("kwargs, match", [
    ({"batch_size": 6, "process_count": 4, "process_index": 0}, "multiple of the process count"),
    ({"start_step": -1}, "start_step"),
    ({"max_boxes": 0}, "max_boxes"),
    ({"process_index": 2, "process_count": 2}, "process_index"),
])
def test_train_rejects_bad_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    train_batches(CountingSource(8), 1, **kwargs)


def test_train_rejects_empty_shard():
  with pytest.raises(ValueError, match="no examples"):
    train_batches(CountingSource(1), 1, batch_size=2, process_index=1, process_count=2)


def test_augment_config_from_mapping():
  flips_only = {"photometric": False, "expand": False, "crop": False, "flip": True}
  batches = train_batches(CountingSource(8), 2, augment=flips_only)
  assert sorted(sum((example_ids(b) for b in batches), [])) == list(range(8))
  # Without photometric distortion there is nothing for the train step to distort.
  assert set(batches[0]) == {"image", "boxes", "labels", "difficult", "crowd"}


# ----------------------------------------------------------------------------------------------
# Evaluation.
# ----------------------------------------------------------------------------------------------


def eval_batches(source, **kwargs):
  kwargs = {"image_size": SIZE, "batch_size": 4, "max_boxes": 4, "process_index": 0,
            "process_count": 1, **kwargs}
  return list(pipeline.eval_iterator(source, **kwargs))


def test_eval_with_too_many_boxes_keeps_the_first_and_warns_once(caplog):
  source = CountingSource(10)  # Image i has i % 5 objects.
  with caplog.at_level(logging.WARNING, logger="ssd_jax.data"):
    batches = eval_batches(source, max_boxes=2)
  warnings = [r.getMessage() for r in caplog.records if "max_boxes=2" in r.getMessage()]
  assert len(warnings) == 1 and "evaluation" in warnings[0]
  labels = np.concatenate([b["labels"] for b in batches])[:10]
  np.testing.assert_array_equal(labels, [source.objects(i)[1][:2].tolist() + [0] * (2 - min(
      i % 5, 2)) for i in range(10)])


def test_eval_pads_the_last_batch_and_keeps_ground_truth():
  source = CountingSource(10)
  batches = eval_batches(source)
  assert len(batches) == 3
  mask = np.concatenate([b["mask"] for b in batches])
  np.testing.assert_array_equal(mask, [True] * 10 + [False] * 2)
  ids = np.concatenate([b["image_id"] for b in batches])
  np.testing.assert_array_equal(ids[:10], [str(i) for i in range(10)])
  for batch in batches:
    check_padding(batch, 4)
    assert batch["image"].shape == (4, SIZE, SIZE, 3)
    for row in range(4):
      if not batch["mask"][row]:
        assert batch["image_id"][row] == "" and not np.any(batch["labels"][row])
        assert not np.any(batch["image"][row]) and not np.any(batch["orig_size"][row])
        continue
      i = int(batch["image_id"][row])
      assert np.all(batch["image"][row] == i)
      np.testing.assert_array_equal(batch["orig_size"][row], [12, 16])
      boxes, labels, difficult, crowd = source.objects(i)
      n = len(labels)
      np.testing.assert_allclose(batch["boxes"][row, :n], boxes, atol=1e-6)
      np.testing.assert_array_equal(batch["labels"][row, :n], labels)
      np.testing.assert_array_equal(batch["difficult"][row, :n], difficult)
      np.testing.assert_array_equal(batch["crowd"][row, :n], crowd)


def test_eval_processes_yield_equal_batch_counts_and_disjoint_examples():
  source = CountingSource(11)
  ids = []
  for index in (0, 1):
    batches = eval_batches(source, batch_size=4, process_index=index, process_count=2)
    assert len(batches) == 3 and batches[0]["mask"].shape == (2,)  # ceil(6 / 2) each
    ids.append({i for b in batches for i, m in zip(b["image_id"], b["mask"]) if m})
  assert not ids[0] & ids[1]
  assert ids[0] | ids[1] == {str(i) for i in range(11)}
