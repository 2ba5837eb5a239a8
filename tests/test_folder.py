"""Tests for ssd_jax.data.folder and ssd_jax.data.yolo: every committed layout of tests/layouts.py
reads back as the ground truth; splits, hold-outs, missing images and bad input."""

import logging
import os
import shutil

import numpy as np
import pytest

from ssd_jax.data import folder, sources, yolo
from tests import layouts

LAYOUTS_DIR = os.path.join(os.path.dirname(__file__), "data", "layouts")
# The layouts with train/test (or val) splits, and those without (a hold-out is reported).
SPLIT = ("voc_devkit", "voc_split_folders", "yolo_ultralytics", "yolo_roboflow", "coco_roboflow")
UNSPLIT = ("voc_beside", "yolo_labelimg")
FORMATS = {"voc": ("voc_devkit", "voc_beside", "voc_split_folders"),
           "yolo": ("yolo_ultralytics", "yolo_roboflow", "yolo_labelimg"),
           "coco": ("coco_roboflow",)}
TRUTH = {image.file_name: image for image in layouts.IMAGES}


def test_every_layout_is_committed_and_tested():
  assert sorted(os.listdir(LAYOUTS_DIR)) == sorted(layouts.LAYOUTS) == sorted(SPLIT + UNSPLIT)


def roles(name, **kwargs):
  return {role: folder.folder_source(os.path.join(LAYOUTS_DIR, name), role, **kwargs)
          for role in folder.ROLES}


@pytest.mark.parametrize("name", SPLIT + UNSPLIT)
def test_layout_reads_back_as_the_ground_truth(name):
  found = roles(name)
  assert found["val"] is None  # not asked for
  records = found["train"].records + found["eval"].records
  assert sorted(os.path.basename(r.image_path) for r in records) == sorted(TRUTH)
  assert found["train"].class_names == found["eval"].class_names == list(layouts.CLASSES)
  for record in records:
    truth = TRUTH[os.path.basename(record.image_path)]
    w, h = truth.width, truth.height
    expected = np.array([box for _, box in truth.objects], np.float64).reshape(-1, 4)
    np.testing.assert_allclose(record.boxes, expected / [w, h, w, h], atol=2e-6,
                               err_msg=record.image_path)
    np.testing.assert_array_equal(
        record.labels, [1 + layouts.CLASSES.index(c) for c, _ in truth.objects])
    np.testing.assert_allclose(record.area, (expected[:, 2] - expected[:, 0])
                               * (expected[:, 3] - expected[:, 1]), rtol=1e-4)
    assert not record.difficult.any() and not record.crowd.any()
  if name in SPLIT:  # the folder's own split: test (Ultralytics: val) is reported
    assert sorted(os.path.basename(r.image_path) for r in found["eval"].records) == sorted(
        im.file_name for im in layouts.IMAGES if im.split == "test")


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_format_is_recognized_and_logged(fmt, caplog):
  for name in FORMATS[fmt]:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ssd_jax.data"):
      folder.folder_source(os.path.join(LAYOUTS_DIR, name), "train")
    assert any(f"{fmt} dataset" in r.getMessage() for r in caplog.records), name
    assert folder.read_folder(os.path.join(LAYOUTS_DIR, name)).format == fmt


def test_images_of_every_extension_decode_at_their_size():
  source = roles("voc_devkit")["train"]
  examples = list(source.as_dataset().as_numpy_iterator())
  assert [ex["image_id"].decode() for ex in examples] == ["IMG_0001", "IMG_0002", "photo3"]
  for ex, record in zip(examples, source.records):
    truth = TRUTH[os.path.basename(record.image_path)]
    assert ex["image"].shape == (truth.height, truth.width, 3)


def _names(source):
  return sorted(os.path.basename(r.image_path) for r in source.records)


@pytest.mark.parametrize("name", UNSPLIT)
def test_hold_out_is_seeded_disjoint_and_complete(name, caplog):
  with caplog.at_level(logging.INFO, logger="ssd_jax.data"):
    first = roles(name, holdout=0.4, seed=3)
  assert any("2 of the training images held out as the reported test split (seed 3)"
             in r.getMessage() for r in caplog.records)
  assert len(first["eval"].records) == 2 and len(first["train"].records) == 3
  assert not set(_names(first["eval"])) & set(_names(first["train"]))
  again = roles(name, holdout=0.4, seed=3)
  assert _names(again["eval"]) == _names(first["eval"])
  draws = {tuple(_names(roles(name, holdout=0.4, seed=s)["eval"])) for s in range(6)}
  assert len(draws) > 1  # the seed matters
  with_val = roles(name, holdout=0.2, seed=3, validation=True)
  parts = [_names(with_val[role]) for role in folder.ROLES]
  assert [len(p) for p in parts] == [3, 1, 1]
  assert sorted(sum(parts, [])) == sorted(TRUTH)


class R:
  """A stand-in record: only ``image_path`` matters to the assignment."""

  def __init__(self, name):
    self.image_path = name


def _assigned(splits, validation=False):
  result, how = folder.assign_roles({k: [R(n) for n in v] for k, v in splits.items()}, 0.25, 0,
                                    validation)
  return {k: None if v is None else sorted(r.image_path for r in v) for k, v in result.items()}, how


def test_assignment_of_a_devkit_with_every_split():
  splits = {"train": ["a", "b"], "val": ["c"], "trainval": ["a", "b", "c"], "test": ["d"]}
  assert _assigned(splits)[0] == {"train": ["a", "b", "c"], "val": None, "eval": ["d"]}
  assert _assigned(splits, validation=True)[0] == {"train": ["a", "b"], "val": ["c"],
                                                   "eval": ["d"]}
  # No test split: val is reported, so training leaves it out (train, not trainval).
  no_test = {k: v for k, v in splits.items() if k != "test"}
  result, how = _assigned(no_test)
  assert result == {"train": ["a", "b"], "val": None, "eval": ["c"]}
  assert "the val split is reported" in how
  # ... and a validation split is then held out of training.
  result, how = _assigned(no_test, validation=True)
  assert result["eval"] == ["c"] and len(result["val"]) == 1 and len(result["train"]) == 1
  assert sorted(result["train"] + result["val"]) == ["a", "b"]


def test_assignment_without_training_images_is_an_error():
  with pytest.raises(ValueError, match=r"no training images: the folder's splits are \['test'\]"):
    _assigned({"test": ["a"]})
  with pytest.raises(ValueError, match="too few to hold out"):
    _assigned({folder.ALL: ["a"]})


@pytest.mark.parametrize("name,split", [("train", "train"), ("valid", "val"),
                                        ("validation", "val"), ("Val", "val"),
                                        ("instances_train2017.json", "train"),
                                        ("trainval", "trainval"), ("test-dev", "test"),
                                        ("images", None), ("trainer", None), ("retest", None)])
def test_split_names(name, split):
  assert folder.split_name(name) == split


def _copy(name, tmp_path):
  root = str(tmp_path / name)
  shutil.copytree(os.path.join(LAYOUTS_DIR, name), root)
  return root


def test_images_missing_beyond_a_small_share_stop_with_their_names(tmp_path):
  """labelImg's XML names IMG_0001.JPG; a folder where it is gone (renamed, not copied)."""
  root = _copy("voc_devkit", tmp_path)
  os.remove(os.path.join(root, "JPEGImages", "IMG_0001.JPG"))
  with pytest.raises(ValueError, match=r"\(train\): 1 of 3 images cannot be found or read "
                     r"\(more than 2%\), e\.g\. .*IMG_0001\.jpg"):
    folder.folder_source(root, "train")
  folder.folder_source(root, "eval")  # the test images are all there


def test_a_few_missing_images_are_skipped_by_name(caplog):
  records = [sources.Record(os.path.join(LAYOUTS_DIR, "yolo_labelimg", n), n, np.zeros((0, 4)),
                            np.zeros(0, np.int32), np.zeros(0, bool), np.zeros(0, bool),
                            np.zeros(0, np.float32))
             for n in ["photo3.png"] * 59 + ["gone.jpg"]]
  with caplog.at_level(logging.WARNING, logger="ssd_jax.data"):
    kept = sources.drop_missing_images(records, "mine")
  assert len(kept) == 59
  assert any("gone.jpg not found" in r.getMessage() and "(1 of 60 images)" in r.getMessage()
             for r in caplog.records)
  with pytest.raises(ValueError, match="2 of 60 images"):
    sources.drop_missing_images(records[1:] + records[-1:], "mine")


def test_unrecognized_folder_names_what_was_looked_for(tmp_path):
  (tmp_path / "notes.txt").write_text("hello")
  with pytest.raises(ValueError, match=r"no dataset layout recognized.*PASCAL VOC.*COCO JSON.*"
                     r"YOLO txt.*It holds: \['notes.txt'\]"):
    folder.read_folder(str(tmp_path))
  with pytest.raises(ValueError, match="is not a directory"):
    folder.read_folder(str(tmp_path / "nowhere"))


def test_yolo_without_class_names_is_an_error(tmp_path):
  root = _copy("yolo_labelimg", tmp_path)
  os.remove(os.path.join(root, "classes.txt"))
  with pytest.raises(ValueError, match=r"no file naming the classes: expected one of "
                     r"\['data.yaml'"):
    folder.read_folder(root)


@pytest.mark.parametrize("line,match", [
    ("0 0.5 0.5 0.2", "got 4 fields"),
    ("apple 0.5 0.5 0.2 0.2", "expected 'class cx cy w h' numbers"),
    ("2 0.5 0.5 0.2 0.2", r"class index 2 is not in 0..1"),
])
def test_bad_yolo_lines_name_file_and_line(tmp_path, line, match):
  root = _copy("yolo_labelimg", tmp_path)
  with open(os.path.join(root, "photo3.txt"), "a") as f:
    f.write(f"{line}\n")
  with pytest.raises(ValueError, match=rf"photo3\.txt:2: .*{match}"):
    folder.read_folder(root)


def test_yolo_polygon_gives_its_extent(tmp_path):
  root = _copy("yolo_labelimg", tmp_path)
  with open(os.path.join(root, "photo3.txt"), "w") as f:
    f.write("1 0.1 0.2 0.5 0.1 0.4 0.6\n")
  record = next(r for r in folder.read_folder(root).splits[folder.ALL]
                if r.image_path.endswith("photo3.png"))
  np.testing.assert_allclose(record.boxes, [[0.1, 0.1, 0.5, 0.6]], atol=1e-6)
  np.testing.assert_array_equal(record.labels, [2])


@pytest.mark.parametrize("content,names", [
    ("names: [a, b]\n", ["a", "b"]),
    ("names:\n  1: b\n  0: a\n", ["a", "b"]),
    ("nc: 2\n", None),
    ("names:\n  0: a\n  2: b\n", None),
])
def test_yolo_class_names(tmp_path, content, names):
  path = tmp_path / "data.yaml"
  path.write_text(content)
  if names is None:
    with pytest.raises(ValueError, match="names"):
      yolo.read_class_names(str(path))
  else:
    assert yolo.read_class_names(str(path)) == names


@pytest.mark.parametrize("image,label", [
    ("d/images/train/x.jpg", "d/labels/train/x.txt"),
    ("d/train/images/x.JPG", "d/train/labels/x.txt"),
    ("images/x.png", "labels/x.txt"),
    ("d/photos/x.jpeg", "d/photos/x.txt"),
])
def test_yolo_label_file(image, label):
  assert yolo.label_file(image) == label


def test_voc_image_is_found_by_its_name_in_another_case(tmp_path):
  """An XML renamed (its stem no longer the image's) whose ``<filename>`` differs in case."""
  root = _copy("voc_beside", tmp_path)
  xml = os.path.join(root, "IMG_0001.xml")
  with open(xml) as f:
    content = f.read().replace("<filename>IMG_0001.JPG", "<filename>img_0001.jpg")
  os.remove(xml)
  with open(os.path.join(root, "label_1.xml"), "w") as f:
    f.write(content)
  record = next(r for r in folder.read_folder(root).splits[folder.ALL]
                if r.image_id == "label_1")
  assert record.image_path == os.path.join(root, "IMG_0001.JPG")
