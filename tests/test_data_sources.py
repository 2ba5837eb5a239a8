"""Tests for ssd_jax.data sources: VOC directory, COCO JSON, tfds, shuffle/skip/shard, bad input."""

import json
import logging
import os
import shutil

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from ssd_jax import data
from ssd_jax.data import pipeline
from ssd_jax.data import sources
from tests import fixtures

VOC_ROOT_KEYS = ("image", "boxes", "labels", "difficult", "crowd", "area", "image_id")


def collect(ds: tf.data.Dataset) -> list[dict]:
  return [{k: (v.decode() if isinstance(v, bytes) else v) for k, v in ex.items()}
          for ex in ds.as_numpy_iterator()]


def check_format(ex: dict, num_classes: int):
  assert sorted(ex) == sorted(VOC_ROOT_KEYS)
  n = len(ex["labels"])
  assert ex["image"].dtype == np.uint8 and ex["image"].ndim == 3 and ex["image"].shape[2] == 3
  assert ex["boxes"].dtype == np.float32 and ex["boxes"].shape == (n, 4)
  assert ex["labels"].dtype == np.int32
  assert ex["difficult"].dtype == bool and ex["difficult"].shape == (n,)
  assert ex["crowd"].dtype == bool and ex["crowd"].shape == (n,)
  assert ex["area"].dtype == np.float32 and ex["area"].shape == (n,)
  assert np.all(np.isfinite(ex["area"])) and np.all(ex["area"] >= 0)
  assert isinstance(ex["image_id"], str)
  assert np.all(np.isfinite(ex["boxes"]))
  assert np.all((ex["boxes"] >= 0) & (ex["boxes"] <= 1))
  assert np.all(ex["boxes"][:, 2:] > ex["boxes"][:, :2])
  assert np.all((ex["labels"] >= 1) & (ex["labels"] <= num_classes))


def reference_examples(images, class_names=data.VOC_CLASSES, keep_difficult=True):
  """Loop-based expected annotations of fixture images (VOC ``(x - 1) / W`` convention)."""
  expected = []
  for image in images:
    boxes, labels, difficult, crowd, area = [], [], [], [], []
    for o in image.objects:
      if o.difficult and not keep_difficult:
        continue
      xmin, ymin, xmax, ymax = o.bndbox
      boxes.append([(xmin - 1) / image.width, (ymin - 1) / image.height,
                    (xmax - 1) / image.width, (ymax - 1) / image.height])
      labels.append(list(class_names).index(o.name) + 1)
      difficult.append(o.difficult)
      crowd.append(o.crowd)
      area.append((xmax - xmin) * (ymax - ymin))  # Pixels; the fixture boxes lie in the image.
    expected.append({"boxes": np.array(boxes, np.float64).reshape(-1, 4),
                     "labels": np.array(labels), "difficult": np.array(difficult, bool),
                     "crowd": np.array(crowd, bool), "area": np.array(area, np.float64),
                     "image_id": image.image_id, "shape": (image.height, image.width, 3)})
  return expected


@pytest.fixture(scope="module")
def fixture(tmp_path_factory) -> fixtures.DetectionFixture:
  return fixtures.write_detection_fixture(str(tmp_path_factory.mktemp("detection")))


# ---------------------------------------------------------------------------------------------
# VOC directory and COCO JSON.


@pytest.mark.parametrize("use_parent", [False, True])
def test_voc_directory_matches_reference(fixture, use_parent):
  root = os.path.dirname(fixture.voc_root) if use_parent else fixture.voc_root
  source = data.voc_directory(root)
  assert source.class_names == list(data.VOC_CLASSES)
  assert source.num_examples == len(fixture.images)
  examples = collect(source.as_dataset())
  expected = reference_examples(fixture.images)
  assert [ex["image_id"] for ex in examples] == [e["image_id"] for e in expected]
  for ex, exp, image in zip(examples, expected, fixture.images):
    check_format(ex, 20)
    assert ex["image"].shape == exp["shape"]
    np.testing.assert_allclose(ex["boxes"], exp["boxes"], atol=1e-6)
    np.testing.assert_array_equal(ex["labels"], exp["labels"])
    np.testing.assert_array_equal(ex["difficult"], exp["difficult"])
    np.testing.assert_array_equal(ex["area"], exp["area"])  # Box w * h in pixels.
    assert not ex["crowd"].any()  # VOC has no crowd flag.
    path = os.path.join(fixture.voc_root, f"VOC{image.year}", "JPEGImages",
                        f"{image.image_id}.jpg")
    pil = np.asarray(Image.open(path).convert("RGB"), np.float64)
    assert np.abs(ex["image"] - pil).mean() < 2.0


def test_voc_years_split_and_difficult(fixture):
  source = data.voc_directory(fixture.voc_root, years="2007", keep_difficult=False)
  images = [i for i in fixture.images if i.year == "2007"]
  expected = reference_examples(images, keep_difficult=False)
  examples = collect(source.as_dataset())
  assert [ex["image_id"] for ex in examples] == [e["image_id"] for e in expected]
  for ex, exp in zip(examples, expected):
    np.testing.assert_allclose(ex["boxes"], exp["boxes"], atol=1e-6)
    assert not ex["difficult"].any()
  assert len(examples[0]["labels"]) == 1  # The difficult person is gone.
  assert examples[1]["boxes"].shape == (0, 4)  # No objects: kept, empty.
  with pytest.raises(ValueError, match="VOC2010"):
    data.voc_directory(fixture.voc_root, years=("2007", "2010"))
  with pytest.raises(ValueError, match="val.txt"):
    data.voc_directory(fixture.voc_root, split="val")


def test_coco_json_agrees_with_voc(fixture):
  voc = collect(data.voc_directory(fixture.voc_root).as_dataset())
  source = data.coco_json(fixture.coco_json, fixture.coco_image_dir)
  assert source.class_names == list(data.VOC_CLASSES)  # Scrambled ids, sorted by id.
  coco = collect(source.as_dataset())
  assert len(coco) == len(voc) == len(fixture.images)
  for c, v, image, exp in zip(coco, voc, fixture.images, reference_examples(fixture.images)):
    check_format(c, 20)
    assert c["image_id"] == str(image.coco_id)
    np.testing.assert_array_equal(c["image"], v["image"])
    np.testing.assert_allclose(c["boxes"], v["boxes"], atol=1e-6)
    np.testing.assert_array_equal(c["labels"], v["labels"])
    np.testing.assert_array_equal(c["crowd"], exp["crowd"])
    np.testing.assert_array_equal(c["area"], exp["area"])  # The fixture's area is the box's.
    assert not c["difficult"].any()


def test_coco_area_from_annotation_else_box_and_crowd(fixture, tmp_path):
  content = fixtures.coco_dict(fixture.images)
  by_id = {ann["id"]: ann for ann in content["annotations"]}
  anns = [by_id[k] for k in sorted(by_id)]  # Annotation id order = object order.
  for k, ann in enumerate(anns):
    if k % 2:
      del ann["area"]  # Falls back to the box's w * h.
    else:
      ann["area"] = 7.25 + k  # A segmentation area, unrelated to the box.
  anns[1]["bbox"][2] += 40.0  # Sticks out of the image, without 'area': the clipped box's area.
  path = str(tmp_path / "areas.json")
  with open(path, "w") as f:
    json.dump(content, f)
  source = data.coco_json(path, fixture.coco_image_dir)
  got_area = np.concatenate([r.area for r in source.records])
  got_crowd = np.concatenate([r.crowd for r in source.records])
  assert len(got_area) == len(anns)
  for k, (ann, area, crowd) in enumerate(zip(anns, got_area, got_crowd)):
    image = next(i for i in content["images"] if i["id"] == ann["image_id"])
    x, y, w, h = ann["bbox"]
    box_area = (min(x + w, image["width"]) - x) * (min(y + h, image["height"]) - y)
    assert area == np.float32(ann["area"] if k % 2 == 0 else box_area), k
    assert crowd == bool(ann["iscrowd"])
  assert got_crowd.any() and got_area.dtype == np.float32
  for ex, record in zip(collect(source.as_dataset()), source.records):
    check_format(ex, 20)
    np.testing.assert_array_equal(ex["area"], record.area)
    np.testing.assert_array_equal(ex["crowd"], record.crowd)


def test_coco_class_names_argument(fixture, tmp_path):
  names = list(data.VOC_CLASSES)[::-1]
  source = data.coco_json(fixture.coco_json, fixture.coco_image_dir, class_names=names)
  assert source.class_names == names
  for record, exp in zip(source.records, reference_examples(fixture.images, names)):
    np.testing.assert_array_equal(record.labels, exp["labels"])
  with pytest.raises(ValueError, match=r"coco\.json: category 5 has unknown class 'aeroplane'"):
    data.coco_json(fixture.coco_json, fixture.coco_image_dir, class_names=["cat"])


def test_synthetic_area_is_the_pixel_box_area():
  source = data.synthetic("test", num_examples=3, image_size=40, max_objects=5)
  for k, ex in enumerate(collect(source.as_dataset())):
    check_format(ex, 4)
    wh = (ex["boxes"][:, 2:] - ex["boxes"][:, :2]).astype(np.float64) * 40
    np.testing.assert_allclose(ex["area"], wh[:, 0] * wh[:, 1], rtol=1e-5)
    np.testing.assert_array_equal(ex["area"], source.generate(k)["area"])
    assert np.all(ex["area"] == np.round(ex["area"]))  # Whole pixels.


def test_eval_batches_carry_the_area(fixture):
  source = data.coco_json(fixture.coco_json, fixture.coco_image_dir)
  batches = list(pipeline.eval_iterator(source, image_size=16, batch_size=2, max_boxes=4,
                                        process_index=0, process_count=1))
  assert len(batches) == 3  # 5 images, the last row padding.
  rows = [(b, i) for b in batches for i in range(2)]
  for (batch, i), record in zip(rows, source.records):
    assert batch["area"].shape == (2, 4) and batch["area"].dtype == np.float32
    n = len(record.labels)
    np.testing.assert_array_equal(batch["area"][i, :n], record.area)
    assert not batch["area"][i, n:].any()  # Padding rows: 0.
  last, row = rows[-1]
  assert not last["mask"][row] and not last["area"][row].any()


# ---------------------------------------------------------------------------------------------
# Reading order: shard, shuffle, skip.


def reference_order(n, shuffle, seed, skip, shard):
  """Loop-based: shard = contiguous blocks, the first n % count one longer; then permute (TF's
  stateless index shuffle, one position at a time, seed pair = the int64 seed's two halves);
  skip."""
  index, count = shard
  start = 0
  for k in range(index):
    start += n // count + (1 if k < n % count else 0)
  size = n // count + (1 if index < n % count else 0)
  order = list(range(start, start + size))
  if shuffle:
    pair = tf.constant([seed // 2**32, seed % 2**32], tf.int64)
    order = [order[int(tf.random.experimental.index_shuffle(
        tf.constant(p, tf.int64), pair, tf.constant(size - 1, tf.int64)))] for p in range(size)]
    assert sorted(order) == list(range(start, start + size))  # a permutation of the shard
  return order[skip:]


@pytest.mark.parametrize("n,count", [(10, 3), (7, 7), (3, 5), (0, 2), (1000, 8)])
def test_example_order(n, count):
  seen = []
  for index in range(count):
    order = sources.example_order(n, shard=(index, count))
    assert list(order) == reference_order(n, False, 0, 0, (index, count))
    seen += list(order)
    shuffled = sources.example_order(n, shuffle=True, seed=4, skip=2, shard=(index, count))
    np.testing.assert_array_equal(shuffled, reference_order(n, True, 4, 2, (index, count)))
    np.testing.assert_array_equal(
        shuffled, sources.example_order(n, shuffle=True, seed=4, skip=2, shard=(index, count)))
  assert sorted(seen) == list(range(n))  # The shards partition the examples.
  if n >= 10:
    assert not np.array_equal(sources.example_order(n, True, seed=1),
                              sources.example_order(n, True, seed=2))
  with pytest.raises(ValueError, match="shard"):
    sources.example_order(n, shard=(count, count))
  with pytest.raises(ValueError, match="skip"):
    sources.example_order(n, skip=-1)


def test_epoch_seed_is_the_seed_pair_and_rejects_out_of_range():
  assert sources.epoch_seed(3, 5) == 3 * 2**32 + 5
  np.testing.assert_array_equal(sources.example_order(50, True, seed=sources.epoch_seed(3, 5)),
                                reference_order(50, True, 3 * 2**32 + 5, 0, (0, 1)))
  for seed, epoch in ((-1, 0), (2**31, 0), (0, -1), (0, 2**31)):
    with pytest.raises(ValueError, match="must be in"):
      sources.epoch_seed(seed, epoch)


def stream_ids(source, count, **kwargs):
  return [ex["image_id"] for ex in collect(source.stream(**kwargs).take(count))]


@pytest.mark.parametrize("shard", [(0, 1), (1, 2)])
def test_stream_is_the_epochs_of_as_dataset(fixture, shard):
  source = data.voc_directory(fixture.voc_root)
  size = source.shard_size(shard)
  epochs = sum(([ex["image_id"] for ex in collect(source.as_dataset(
      shuffle=True, seed=sources.epoch_seed(7, e), shard=shard))] for e in range(4)), [])
  assert stream_ids(source, 4 * size, seed=7, shard=shard) == epochs
  assert len(set(map(tuple, np.reshape(epochs, (4, size))))) > 1  # epochs differ
  start = size + 1  # mid-epoch 1
  assert stream_ids(source, 2 * size, seed=7, start=start, shard=shard) == \
      epochs[start:start + 2 * size]
  with pytest.raises(ValueError, match="must be in"):
    source.stream(seed=-1)


def test_small_datasets_stream_from_images_decoded_once(fixture):
  source = data.voc_directory(fixture.voc_root)
  from_disk = {ex["image_id"]: ex["image"] for ex in collect(source.as_dataset())}
  assert not source.cached
  streamed = collect(source.stream(seed=2).take(2 * source.num_examples))
  assert source.cached
  for ex in streamed:
    np.testing.assert_array_equal(ex["image"], from_disk[ex["image_id"]])
  for path in (r.image_path for r in source.records):  # read from memory from now on
    os.rename(path, path + ".moved")
  try:
    assert sorted(ex["image_id"] for ex in collect(source.stream(seed=3).take(
        source.num_examples))) == sorted(from_disk)
  finally:
    for path in (r.image_path for r in source.records):
      os.rename(path + ".moved", path)
  too_small = data.voc_directory(fixture.voc_root)
  too_small.cache_bytes = 1000  # fewer bytes than the images take
  collect(too_small.stream(seed=2).take(1))
  assert not too_small.cached


@pytest.fixture
def tolerant(monkeypatch):
  """Skipping, not stopping, at one unreadable image of the fixture's five."""
  monkeypatch.setattr(sources, "MAX_UNREADABLE_SHARE", 0.5)


@pytest.mark.parametrize("cache_bytes", [sources.decoded_lib.DEFAULT_BUDGET_BYTES, 0])
def test_stream_skips_unreadable_images_naming_them(fixture, tmp_path, caplog, cache_bytes,
                                                    tolerant):
  root = str(tmp_path / "VOCdevkit")
  shutil.copytree(fixture.voc_root, root)
  with open(os.path.join(root, "VOC2007", "JPEGImages", "000003.jpg"), "wb") as f:
    f.write(b"this is not an image")
  source = data.voc_directory(root)
  source.cache_bytes = cache_bytes  # decoded once (unreadable found then), or on every read
  readable = [r.image_id for r in source.records if r.image_id != "000003"]
  with caplog.at_level(logging.WARNING, logger="ssd_jax.data"):
    ids = stream_ids(source, 3 * len(readable), seed=1)
  assert "000003" not in ids
  for epoch in range(3):
    assert sorted(ids[epoch * 4:(epoch + 1) * 4]) == sorted(readable)  # 4 readable per epoch
  messages = [r.getMessage() for r in caplog.records if "Skipping" in r.getMessage()]
  assert messages and all("000003.jpg" in m for m in messages)
  assert source.cached == (cache_bytes > 0)


def test_stream_of_only_unreadable_images_is_an_error(fixture, tmp_path):
  root = str(tmp_path / "VOCdevkit")
  shutil.copytree(fixture.voc_root, root)
  source = data.voc_directory(root)
  for record in source.records:
    with open(record.image_path, "wb") as f:
      f.write(b"not an image")
  source.cache_bytes = 0  # read on every pass: the stream itself finds them
  with pytest.raises(tf.errors.InvalidArgumentError, match="none of the 5 images"):
    stream_ids(source, 1, seed=0)


def test_more_unreadable_images_than_a_small_share_stop_training(fixture, tmp_path):
  """Decoded once for training: two corrupt images of five are found before the first step."""
  root = str(tmp_path / "VOCdevkit")
  shutil.copytree(fixture.voc_root, root)
  source = data.voc_directory(root)
  for record in source.records[1:3]:
    with open(record.image_path, "wb") as f:
      f.write(b"not an image")
  with pytest.raises(ValueError, match=r"training images: 2 of 5 images cannot be found or "
                     r"read \(more than 2%\), e\.g\. .*000002\.jpg, .*000003\.jpg"):
    stream_ids(source, 1, seed=0)


def test_as_dataset_order(fixture):
  source = data.voc_directory(fixture.voc_root)
  ids = [r.image_id for r in source.records]
  for kwargs in [dict(shuffle=True, seed=3), dict(shuffle=True, seed=3, skip=2),
                 dict(shard=(1, 2)), dict(shuffle=True, seed=1, skip=1, shard=(0, 2)),
                 dict(skip=99)]:
    got = [ex["image_id"] for ex in collect(source.as_dataset(**kwargs))]
    order = sources.example_order(source.num_examples, **kwargs)
    assert got == [ids[i] for i in order], kwargs
  assert source.shard_size((0, 2)) == 3 and source.shard_size((1, 2)) == 2


# ---------------------------------------------------------------------------------------------
# Bad input.


def write_voc_case(root, objects_xml: str, width=40, height=30, image_bytes=None) -> str:
  """A one-image VOC2007 devkit whose annotation has ``objects_xml``; returns the xml path."""
  fixtures.write_voc(root, [fixtures.FixtureImage("000001", "2007", width, height, [])])
  xml = os.path.join(root, "VOC2007", "Annotations", "000001.xml")
  with open(xml, "w") as f:
    f.write(f"<annotation><size><width>{width}</width><height>{height}</height></size>"
            f"{objects_xml}</annotation>")
  if image_bytes is not None:
    with open(os.path.join(root, "VOC2007", "JPEGImages", "000001.jpg"), "wb") as f:
      f.write(image_bytes)
  return xml


def voc_object(name, xmin, ymin, xmax, ymax):
  return (f"<object><name>{name}</name><bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin>"
          f"<xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>")


def test_corrupt_and_missing_images_are_skipped_with_warning(fixture, tmp_path, caplog,
                                                            tolerant):
  root = str(tmp_path / "VOCdevkit")
  shutil.copytree(fixture.voc_root, root)
  jpegs = os.path.join(root, "VOC2007", "JPEGImages")
  with open(os.path.join(jpegs, "000001.jpg"), "rb") as f:
    good = f.read()
  with open(os.path.join(jpegs, "000001.jpg"), "wb") as f:
    f.write(good[:len(good) // 2])  # Truncated JPEG.
  with open(os.path.join(jpegs, "000003.jpg"), "wb") as f:
    f.write(b"this is not an image")
  os.remove(os.path.join(root, "VOC2012", "JPEGImages", "2008_000005.jpg"))
  with caplog.at_level(logging.WARNING, logger="ssd_jax.data"):
    source = data.voc_directory(root)  # A missing file is dropped here, by name.
    examples = collect(source.as_dataset())
  assert source.num_examples == 4
  assert [ex["image_id"] for ex in examples] == ["000002", "2008_000004"]
  messages = [r.getMessage() for r in caplog.records]
  assert any("2008_000005.jpg not found" in m and "(1 of 5 images)" in m for m in messages)
  messages = [m for m in messages if "Skipping" in m]
  assert len(messages) == 2
  for name, count in [("000001.jpg", 1), ("000003.jpg", 2)]:
    assert any(name in m and f"({count} skipped" in m for m in messages), (name, messages)

  # Skipped examples are dropped before decoding: no warning for the corrupt first image.
  caplog.clear()
  with caplog.at_level(logging.WARNING, logger="ssd_jax.data"):
    examples = collect(source.as_dataset(skip=1, shard=(0, 2)))
  assert [ex["image_id"] for ex in examples] == ["000002"]
  assert not [r for r in caplog.records if "000001.jpg" in r.getMessage()]


def test_voc_bad_boxes(tmp_path, caplog):
  objects = (voc_object("dog", 10, 5, 10, 20)       # xmax <= xmin: dropped.
             + voc_object("cat", 5, 5, 20, 15)      # Fine.
             + voc_object("cat", -10, 5, 60, 15)    # Outside: clipped to the image.
             + voc_object("bird", 50, 40, 60, 50)   # Entirely outside: dropped.
             + voc_object("cat", 1, 1, 41.5, 30))   # Over by < 1 px: clipped silently.
  xml = write_voc_case(str(tmp_path), objects)
  with caplog.at_level(logging.WARNING, logger="ssd_jax.data"):
    source = data.voc_directory(str(tmp_path), years="2007")
  record = source.records[0]
  np.testing.assert_allclose(record.boxes, [[4 / 40, 4 / 30, 19 / 40, 14 / 30],
                                            [0, 4 / 30, 1, 14 / 30],
                                            [0, 0, 1, 29 / 30]], atol=1e-6)
  np.testing.assert_array_equal(record.labels, [8, 8, 8])
  np.testing.assert_array_equal(record.area, [15 * 10, 40 * 10, 40 * 29])  # Of the clipped boxes.
  messages = [r.getMessage() for r in caplog.records]
  assert len(messages) == 3, messages
  assert xml in messages[0] and "object 0" in messages[0] and "xmax <= xmin" in messages[0]
  assert xml in messages[1] and "object 2" in messages[1] and "clipped" in messages[1]
  assert xml in messages[2] and "object 3" in messages[2] and "outside" in messages[2]
  examples = collect(source.as_dataset())
  check_format(examples[0], 20)


def test_many_bad_boxes_are_summarized(tmp_path, caplog):
  empty_box = voc_object("dog", 9, 5, 3, 9)
  write_voc_case(str(tmp_path), voc_object("dog", 5, 5, 20, 20) + empty_box * 12)
  with caplog.at_level(logging.WARNING, logger="ssd_jax.data"):
    source = data.voc_directory(str(tmp_path), years="2007")
  assert len(source.records[0].labels) == 1
  messages = [r.getMessage() for r in caplog.records]
  assert len(messages) == 11 and "12 boxes dropped (empty) in total" in messages[-1]


@pytest.mark.parametrize("xml_text,match", [
    ("<annotation><size><width>40", "cannot parse"),
    ("<annotation><object><name>dog</name></object></annotation>", "size"),
    ("<annotation><size><width>0</width><height>5</height></size></annotation>", "positive"),
])
def test_voc_unparsable_annotation(tmp_path, xml_text, match):
  xml = write_voc_case(str(tmp_path), "")
  with open(xml, "w") as f:
    f.write(xml_text)
  with pytest.raises(ValueError, match=match) as error:
    data.voc_directory(str(tmp_path), years="2007")
  assert xml in str(error.value)


def test_voc_unknown_class_and_bad_bndbox(tmp_path):
  xml = write_voc_case(str(tmp_path), voc_object("dog", 1, 1, 5, 5) + voc_object("unicorn", 1, 1,
                                                                                  5, 5))
  with pytest.raises(ValueError, match="'unicorn'") as error:
    data.voc_directory(str(tmp_path), years="2007")
  assert xml in str(error.value) and "object 1" in str(error.value)
  xml = write_voc_case(str(tmp_path), voc_object("dog", "a", 1, 5, 5))
  with pytest.raises(ValueError, match="bndbox") as error:
    data.voc_directory(str(tmp_path), years="2007")
  assert xml in str(error.value)


def test_coco_bad_input(fixture, tmp_path, caplog):
  content = fixtures.coco_dict(fixture.images)
  content["annotations"][0]["bbox"] = [5, 5, 0, 10]          # Zero width: dropped.
  content["annotations"][1]["bbox"] = [float("nan"), 5, 3, 3]  # NaN: dropped.
  path = str(tmp_path / "bad.json")
  with open(path, "w") as f:
    json.dump(content, f)
  with caplog.at_level(logging.WARNING, logger="ssd_jax.data"):
    source = data.coco_json(path, fixture.coco_image_dir)
  messages = [r.getMessage() for r in caplog.records]
  assert len(messages) == 2 and all(path in m for m in messages)
  assert any(f"annotation {content['annotations'][0]['id']} " in m for m in messages)
  total = sum(len(o.objects) for o in fixture.images)
  assert sum(len(r.labels) for r in source.records) == total - 2
  for ex in collect(source.as_dataset()):
    check_format(ex, 20)

  with open(path, "w") as f:
    f.write('{"images": [')
  with pytest.raises(ValueError, match="cannot parse") as error:
    data.coco_json(path, fixture.coco_image_dir)
  assert path in str(error.value)

  for key, value, match in [("category_id", 999, "unknown category 999"),
                            ("image_id", -1, "unknown image -1"),
                            ("bbox", [1, 2, 3], "bbox"),
                            ("area", -3.0, "'area' -3.0"),
                            ("area", "big", "'area' 'big'")]:
    broken = fixtures.coco_dict(fixture.images)
    broken["annotations"][0][key] = value
    with open(path, "w") as f:
      json.dump(broken, f)
    with pytest.raises(ValueError, match=match) as error:
      data.coco_json(path, fixture.coco_image_dir)
    assert path in str(error.value)


def test_coco_images_without_annotations_are_kept(fixture, tmp_path):
  content = fixtures.coco_dict(fixture.images)
  del content["annotations"]  # An image_info file (e.g. test-dev).
  path = str(tmp_path / "info.json")
  with open(path, "w") as f:
    json.dump(content, f)
  examples = collect(data.coco_json(path, fixture.coco_image_dir).as_dataset())
  assert len(examples) == len(fixture.images)
  assert all(ex["boxes"].shape == (0, 4) and ex["labels"].shape == (0,) for ex in examples)


# ---------------------------------------------------------------------------------------------
# tfds.


def reference_tfds(examples, id_key):
  """Loop-based conversion of generated tfds examples to the source format."""
  expected = []
  for ex in examples:
    objects = ex["objects"]
    boxes, labels, difficult, crowd, area = [], [], [], [], []
    height, width = ex["image"].shape[:2]
    for k in range(len(objects["label"])):
      ymin, xmin, ymax, xmax = objects["bbox"][k]
      boxes.append([xmin, ymin, xmax, ymax])
      labels.append(objects["label"][k] + 1)
      difficult.append(bool(objects.get("is_difficult", [False] * (k + 1))[k]))
      crowd.append(bool(objects.get("is_crowd", [False] * (k + 1))[k]))
      if "area" in objects:
        area.append(float(objects["area"][k]))
      else:
        area.append((xmax - xmin) * width * (ymax - ymin) * height)
    image_id = (str(ex["image/id"]) if id_key == "image/id"
                else ex["image/filename"].rsplit(".", 1)[0])
    expected.append({"image": ex["image"], "boxes": np.array(boxes).reshape(-1, 4),
                     "labels": labels, "difficult": difficult, "crowd": crowd,
                     "area": np.array(area), "image_id": image_id})
  return expected


@pytest.mark.parametrize("name,split,num_classes,id_key", [
    ("voc/2007", "trainval", 20, "image/filename"),
    ("coco/2017", "train", 80, "image/id"),
])
def test_tfds_source(name, split, num_classes, id_key):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  with fixtures.mock_tfds_detection(num_examples=5) as mock:
    source = data.tfds_source(name, split)
    assert len(source.class_names) == num_classes and source.num_examples == 5
    examples = collect(source.as_dataset())
    expected = reference_tfds(mock.examples[name], id_key)
    assert len(examples) == 5
    for ex, exp in zip(examples, expected):
      check_format(ex, num_classes)
      for key in ("image", "labels", "difficult", "crowd", "image_id"):
        np.testing.assert_array_equal(ex[key], exp[key], err_msg=key)
      np.testing.assert_allclose(ex["boxes"], exp["boxes"], atol=1e-7)
      np.testing.assert_allclose(ex["area"], exp["area"], rtol=1e-6)
    assert any(any(exp["crowd"]) for exp in expected) == (name == "coco/2017")
    has_area = "area" in mock.examples[name][0]["objects"]
    assert has_area == (name == "coco/2017")  # COCO's own areas; VOC: box areas.

    ids = [ex["image_id"] for ex in examples]
    shuffled = [ex["image_id"] for ex in collect(source.as_dataset(shuffle=True, seed=3))]
    again = [ex["image_id"] for ex in collect(source.as_dataset(shuffle=True, seed=3))]
    assert shuffled == again and sorted(shuffled) == sorted(ids)
    assert [ex["image_id"] for ex in collect(source.as_dataset(skip=2))] == ids[2:]
    mock.splits.clear()
    source.as_dataset(shard=(1, 2))
    full_split = "train+validation" if split == "trainval" else split
    assert mock.splits == [tfds.even_splits(full_split, n=2)[1]]


def test_tfds_union():
  with fixtures.mock_tfds_detection(num_examples=3) as mock:
    source = data.tfds_source("voc/2007+voc/2012", "trainval")
    assert source.num_examples == 6 and source.shard_size((0, 2)) == 4
    examples = collect(source.as_dataset(shuffle=True, seed=0))
    expected = (reference_tfds(mock.examples["voc/2007"], "image/filename")
                + reference_tfds(mock.examples["voc/2012"], "image/filename"))

    def key(ex):
      return ex["image"].tobytes()

    assert sorted(map(key, examples)) == sorted(map(key, expected))


def test_tfds_missing_data(tmp_path):
  with pytest.raises(ValueError, match="tfds build voc/2007"):
    data.tfds_source("voc/2007", "test", data_dir=str(tmp_path))
