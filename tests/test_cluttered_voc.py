"""Tests of the cluttered stand-in dataset (ssd_jax.data.cluttered_voc) and of the script that
writes it (experiments/make_voc_folder.py)."""

import os
import subprocess
from xml.etree import ElementTree

import numpy as np
from PIL import Image
import pytest

from ssd_jax import data
from ssd_jax.data import cluttered_voc
from tests import fixtures, forkserver

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_SCENES = 12


@pytest.fixture(scope="module")
def scenes() -> list[cluttered_voc.Scene]:
  return [cluttered_voc.scene_of(0, "trainval", k) for k in range(NUM_SCENES)]


def pixel_sizes(scenes) -> np.ndarray:
  boxes = np.concatenate([s.boxes for s in scenes])
  return np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))


def assert_same_scene(a: cluttered_voc.Scene, b: cluttered_voc.Scene):
  np.testing.assert_array_equal(a.image, b.image)
  np.testing.assert_array_equal(a.boxes, b.boxes)
  np.testing.assert_array_equal(a.classes, b.classes)
  np.testing.assert_array_equal(a.occluded, b.occluded)


def test_a_seed_gives_the_same_scene_and_other_seeds_others():
  assert_same_scene(cluttered_voc.scene_of(3, "test", 5), cluttered_voc.scene_of(3, "test", 5))
  assert_same_scene(cluttered_voc.generate_scene(np.random.default_rng(7)),
                    cluttered_voc.generate_scene(np.random.default_rng(7)))
  reference = cluttered_voc.scene_of(3, "test", 5)
  for other in (cluttered_voc.scene_of(4, "test", 5), cluttered_voc.scene_of(3, "trainval", 5),
                cluttered_voc.scene_of(3, "test", 6)):
    assert (other.image.shape != reference.image.shape
            or not np.array_equal(other.image, reference.image))
    assert other.boxes.shape != reference.boxes.shape or not np.array_equal(other.boxes,
                                                                            reference.boxes)


def test_image_sizes_and_object_counts(scenes):
  shapes = np.array([s.image.shape for s in scenes])
  assert np.all((shapes[:, :2] >= 300) & (shapes[:, :2] <= 500)) and np.all(shapes[:, 2] == 3)
  assert all(s.image.dtype == np.uint8 for s in scenes)
  assert np.any(shapes[:, 0] != shapes[:, 1])  # Not all square.
  assert len({tuple(shape) for shape in shapes}) > NUM_SCENES // 2  # Sizes vary.
  counts = np.array([len(s.boxes) for s in scenes])
  assert np.all((counts >= 5) & (counts <= 30)) and len(set(counts.tolist())) > 3
  for s in scenes:
    assert s.classes.dtype == np.int32 and s.classes.shape == (len(s.boxes),)
    assert np.all((s.classes >= 0) & (s.classes < len(cluttered_voc.CLASS_SHAPES)))
  assert set(np.concatenate([s.classes for s in scenes]).tolist()) == {0, 1, 2}


def test_boxes_are_inside_non_degenerate_and_the_extent_of_their_masks(scenes):
  for s in scenes:
    height, width = s.image.shape[:2]
    boxes = s.boxes
    assert boxes.dtype == np.float32 and np.array_equal(boxes, np.round(boxes))
    assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2] <= width - 1)
    assert np.all(boxes[:, 3] <= height - 1)  # Off the last row and column (voc_annotation).
    assert np.all(boxes[:, 2:] - boxes[:, :2] >= 4)
    assert len(s.masks) == len(boxes)
    for (x0, y0, x1, y1), mask in zip(boxes.astype(int), s.masks):
      assert mask.shape == (y1 - y0, x1 - x0) and mask.dtype == bool
      # The shape reaches all four sides of its box: the box is its pixel extent.
      assert mask[0].any() and mask[-1].any() and mask[:, 0].any() and mask[:, -1].any()


def test_many_objects_are_small_and_some_large(scenes):
  sizes = pixel_sizes(scenes)
  assert 0.25 <= np.mean(sizes < 20) <= 0.55
  assert sizes.min() < 10 and sizes.max() > 70


def test_occlusion_is_capped_and_objects_touch_and_overlap(scenes):
  cap = cluttered_voc.SceneConfig().max_occluded
  occluded, touching = [], 0
  for s in scenes:
    owner = np.full(s.image.shape[:2], -1)  # The last object drawn at each pixel.
    boxes = s.boxes.astype(int)
    for k, ((x0, y0, x1, y1), mask) in enumerate(zip(boxes, s.masks)):
      owner[y0:y1, x0:x1][mask] = k
    for k, ((x0, y0, x1, y1), mask) in enumerate(zip(boxes, s.masks)):
      visible = np.mean(owner[y0:y1, x0:x1][mask] == k)
      occluded.append(1 - visible)
      assert 1 - visible <= cap + 1e-9, (k, visible)
    np.testing.assert_allclose(occluded[-len(boxes):], s.occluded, atol=1e-6)
    for a in boxes:  # Abutting: sharing an edge without overlapping.
      for b in boxes:
        rows_meet = a[1] < b[3] and b[1] < a[3]
        touching += rows_meet and a[2] == b[0]
  occluded = np.array(occluded)
  assert np.mean(occluded > 0) > 0.1 and occluded.max() > 0.3
  assert touching > 0


def test_objects_stand_out_from_their_surroundings(scenes):
  # Large, unoccluded, not low-contrast objects: their pixels differ from a ring just outside.
  differences = []
  for s in scenes:
    image = s.image.astype(float)
    height, width = image.shape[:2]
    for (x0, y0, x1, y1), mask, occluded, low in zip(s.boxes.astype(int), s.masks, s.occluded,
                                                      s.low_contrast):
      if occluded > 0 or low or min(x1 - x0, y1 - y0) < 24:
        continue
      inside = image[y0:y1, x0:x1][mask].mean(axis=0)
      outer = image[max(y0 - 4, 0):y1 + 4, max(x0 - 4, 0):x1 + 4].copy()
      ring = np.ones(outer.shape[:2], bool)
      ring[y0 - max(y0 - 4, 0):, x0 - max(x0 - 4, 0):][:y1 - y0, :x1 - x0] = False
      differences.append(np.linalg.norm(inside - outer[ring].mean(axis=0)))
  assert len(differences) >= 5 and np.median(differences) > 30
  low = np.concatenate([s.low_contrast for s in scenes])
  assert 0.1 < np.mean(low) < 0.45


def test_voc_annotation_bndbox_is_one_based_edges():
  xml = cluttered_voc.voc_annotation("a", 40, 30, np.array([[0, 2, 8, 10]]), ["ring"])
  root = ElementTree.fromstring(xml)
  assert root.findtext("size/width") == "40" and root.findtext("size/depth") == "3"
  assert root.findtext("object/name") == "ring" and root.findtext("object/difficult") == "0"
  assert [root.findtext(f"object/bndbox/{c}") for c in ("xmin", "ymin", "xmax", "ymax")] == [
      "1", "3", "9", "11"]


def test_the_folder_round_trips_through_the_voc_reader(tmp_path):
  root = str(tmp_path / "standin")
  summary = cluttered_voc.write_voc_folder(root, num_trainval=5, num_test=3, seed=2)
  source = data.voc_directory(root, split="trainval", years=(), class_names=None)
  expected = [cluttered_voc.scene_of(2, "trainval", k) for k in range(5)]
  names = sorted({cluttered_voc.CLASS_SHAPES[c] for s in expected for c in s.classes})
  assert source.class_names == names
  assert [r.image_id for r in source.records] == [f"trainval_{k:06d}" for k in range(5)]
  for record, scene in zip(source.records, expected):
    height, width = scene.image.shape[:2]
    np.testing.assert_allclose(record.boxes, scene.boxes / [width, height, width, height],
                               atol=1e-6)
    labels = [names.index(cluttered_voc.CLASS_SHAPES[c]) + 1 for c in scene.classes]
    np.testing.assert_array_equal(record.labels, labels)
    assert not record.difficult.any()
    decoded = np.asarray(Image.open(record.image_path).convert("RGB"))
    assert decoded.shape == scene.image.shape
    assert np.mean(np.abs(decoded.astype(float) - scene.image)) < 8  # JPEG, quality 85.
  test = data.voc_directory(root, split="test", years=(), class_names=names)
  assert [r.image_id for r in test.records] == [f"test_{k:06d}" for k in range(3)]
  assert summary["images"] == 8 and summary["splits"] == {"trainval": 5, "test": 3}
  counts = [len(r.labels) for r in source.records + test.records]
  assert summary["objects"] == sum(counts)
  assert summary["objects_per_image"]["min"] == min(counts)
  with pytest.raises(FileExistsError, match="not empty"):
    cluttered_voc.write_voc_folder(root, num_trainval=1, num_test=1)


def test_the_script_writes_a_folder_and_refuses_a_non_empty_one(tmp_path):
  full = tmp_path / "full"
  full.mkdir()
  (full / "mine.txt").write_text("keep me")
  command = [*forkserver.command("experiments.make_voc_folder"), "--num_trainval", "4",
             "--num_test", "2", "--out"]
  # Both at once (each waits on its own start-up and file writes).
  runs = [subprocess.Popen(command + [str(out)], cwd=ROOT, env=fixtures.subprocess_env(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
          for out in (tmp_path / "new", full)]
  (written, written_err), (_, refused_err) = [run.communicate(timeout=300) for run in runs]
  assert runs[0].returncode == 0, written_err
  assert "Wrote 6 images (4 trainval, 2 test)" in written and "under 20 px" in written
  assert "classes: triangle, cross, ring" in written
  sets = tmp_path / "new" / "ImageSets" / "Main"
  assert (sets / "trainval.txt").read_text().split() == [f"trainval_{k:06d}" for k in range(4)]
  assert (sets / "test.txt").read_text().split() == [f"test_{k:06d}" for k in range(2)]
  assert len(os.listdir(tmp_path / "new" / "JPEGImages")) == 6
  assert runs[1].returncode != 0 and "not empty" in refused_err
  assert os.listdir(full) == ["mine.txt"]
