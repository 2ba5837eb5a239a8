"""Test fixtures for the data sources: tiny VOC + COCO datasets on disk, and a tfds mock.

``write_detection_fixture(root)`` writes the same few JPEG images with VOC devkit annotations
(``root/VOCdevkit/VOC{2007,2012}``) and an equivalent COCO JSON (``root/coco.json`` whose
``file_name`` s are relative to ``root/VOCdevkit``). ``mock_tfds_detection`` mocks tfds with
well-formed detection examples (plain ``tfds.testing.mock_data`` gives unequal object lengths).
"""

import contextlib
import dataclasses
import importlib
import json
import os
import zlib
from typing import Any, Iterator, Optional, Sequence
from xml.sax import saxutils

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from PIL import Image

from ssd_jax import overrides
from ssd_jax.data.voc import VOC_CLASSES


def subprocess_env(**changes: str) -> dict[str, str]:
  """This process's environment (``xla_flags.IN_PROCESS_XLA_FLAGS`` included) with ``changes``,
  for a subprocess."""
  return {**os.environ, **changes}


def experiment_config(name: str, *flags: str) -> ml_collections.ConfigDict:
  """``experiments/configs/<name>.py``'s config (``name`` may end in ``:<arg>``, a config-string
  variant) with ``--config.<key>=<value>`` flags applied, as ``experiments/main.py`` would: for
  the parts of a test that run in the test process."""
  name, _, arg = name.partition(":")
  module = importlib.import_module(f"experiments.configs.{name}")
  config = module.get_config(arg) if arg else module.get_config()
  return overrides.apply_overrides(config, dict(
      overrides.parse_assignment(f.removeprefix("--config.")) for f in flags))


def flat_params(params: Any, prefix: str = "") -> dict[str, np.ndarray]:
  """``{f"{prefix}backbone/stem/kernel": array, ...}``: a params tree's leaves by ``/``-joined
  path, as NumPy arrays (of a replicated array: this process's copy, which also works when
  other processes hold the rest of the global array)."""
  def local(x):
    return np.asarray(x.addressable_data(0) if isinstance(x, jax.Array) else x)

  return {prefix + "/".join(str(k.key) for k in path): local(leaf)
          for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]}


def largest_change(before: dict[str, np.ndarray], after: dict[str, np.ndarray]) -> float:
  """The largest absolute difference between two flattened params trees (``flat_params``)."""
  return max(float(np.max(np.abs(after[k] - before[k]))) for k in before)


def checkpoint_params(workdir, step: Optional[int] = None) -> dict[str, np.ndarray]:
  """The params of checkpoint ``step`` (default: the latest) of the run in ``workdir``,
  flattened (``flat_params``) as NumPy arrays, whatever devices or processes saved them."""
  with ocp.CheckpointManager(os.path.join(workdir, "checkpoints"),
                             item_handlers=ocp.PyTreeCheckpointHandler()) as manager:
    step = manager.latest_step() if step is None else step
    as_numpy = jax.tree_util.tree_map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray),
                                      manager.item_metadata(step).tree)
    restored = manager.restore(step, args=ocp.args.PyTreeRestore(restore_args=as_numpy))
  return flat_params(restored["params"])


@dataclasses.dataclass
class FixtureObject:
  name: str
  bndbox: tuple[int, int, int, int]  # VOC xmin, ymin, xmax, ymax: 1-based pixel indices.
  difficult: bool = False
  crowd: bool = False  # COCO only.


@dataclasses.dataclass
class FixtureImage:
  image_id: str
  year: str
  width: int
  height: int
  objects: list[FixtureObject]

  @property
  def coco_id(self) -> int:
    return int(self.image_id.replace("_", ""))


# VOC07: 3 images (one without objects), VOC12: 2 images; several classes, a difficult object.
DEFAULT_IMAGES = (
    FixtureImage("000001", "2007", 64, 48, [
        FixtureObject("dog", (5, 7, 40, 30)),
        FixtureObject("person", (30, 1, 64, 48), difficult=True),
    ]),
    FixtureImage("000002", "2007", 50, 60, []),
    FixtureImage("000003", "2007", 40, 40, [FixtureObject("aeroplane", (1, 1, 40, 40))]),
    FixtureImage("2008_000004", "2012", 72, 36, [
        FixtureObject("tvmonitor", (10, 5, 20, 30)),
        FixtureObject("cat", (2, 3, 70, 35), crowd=True),
        FixtureObject("dog", (41, 10, 60, 20)),
    ]),
    FixtureImage("2008_000005", "2012", 32, 64, [FixtureObject("bottle", (3, 4, 9, 60))]),
)


@dataclasses.dataclass
class DetectionFixture:
  voc_root: str  # the VOCdevkit folder
  coco_json: str
  coco_image_dir: str
  images: Sequence[FixtureImage]


def write_jpeg(path: str, width: int, height: int, seed: int):
  """A smooth random RGB JPEG (smooth, so that decoders agree to within a grey level or two)."""
  rng = np.random.default_rng(seed)
  small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
  Image.fromarray(small).resize((width, height), Image.BILINEAR).save(path, quality=95)


def voc_xml(image: FixtureImage) -> str:
  """The VOC annotation XML of ``image``."""
  objects = "".join(
      f"<object><name>{saxutils.escape(o.name)}</name><pose>Unspecified</pose>"
      f"<truncated>0</truncated><difficult>{int(o.difficult)}</difficult><bndbox>"
      f"<xmin>{o.bndbox[0]}</xmin><ymin>{o.bndbox[1]}</ymin><xmax>{o.bndbox[2]}</xmax>"
      f"<ymax>{o.bndbox[3]}</ymax></bndbox></object>" for o in image.objects)
  return (f"<annotation><folder>VOC{image.year}</folder><filename>{image.image_id}.jpg"
          f"</filename><size><width>{image.width}</width><height>{image.height}</height>"
          f"<depth>3</depth></size><segmented>0</segmented>{objects}</annotation>")


def write_voc(voc_root: str, images: Sequence[FixtureImage], split: str = "trainval"):
  """Writes ``voc_root/VOC<year>/{JPEGImages,Annotations,ImageSets/Main/<split>.txt}``."""
  by_year: dict[str, list[str]] = {}
  for k, image in enumerate(images):
    year_dir = os.path.join(voc_root, f"VOC{image.year}")
    for sub in ("JPEGImages", "Annotations", os.path.join("ImageSets", "Main")):
      os.makedirs(os.path.join(year_dir, sub), exist_ok=True)
    write_jpeg(os.path.join(year_dir, "JPEGImages", f"{image.image_id}.jpg"), image.width,
               image.height, seed=k)
    with open(os.path.join(year_dir, "Annotations", f"{image.image_id}.xml"), "w") as f:
      f.write(voc_xml(image))
    by_year.setdefault(image.year, []).append(image.image_id)
  for year, ids in by_year.items():
    with open(os.path.join(voc_root, f"VOC{year}", "ImageSets", "Main", f"{split}.txt"), "w") as f:
      f.write("".join(f"{i}\n" for i in ids))


def coco_dict(images: Sequence[FixtureImage],
              class_names: Sequence[str] = VOC_CLASSES) -> dict[str, Any]:
  """COCO JSON equivalent to the VOC annotations (the VOC 1-based ``(xmin - 1) / W`` convention:
  ``bbox = [xmin - 1, ymin - 1, xmax - xmin, ymax - ymin]``), with non-contiguous category ids
  listed in scrambled order (their sorted order is ``class_names``)."""
  category_id = {name: 3 * k + 5 for k, name in enumerate(class_names)}
  annotations = []
  for image in images:
    for o in image.objects:
      xmin, ymin, xmax, ymax = o.bndbox
      annotations.append({
          "id": len(annotations) + 100, "image_id": image.coco_id,
          "category_id": category_id[o.name], "iscrowd": int(o.crowd),
          "bbox": [xmin - 1, ymin - 1, xmax - xmin, ymax - ymin],
          "area": float((xmax - xmin) * (ymax - ymin))})
  return {
      "images": [{"id": image.coco_id, "width": image.width, "height": image.height,
                  "file_name": f"VOC{image.year}/JPEGImages/{image.image_id}.jpg"}
                 for image in images],
      "annotations": annotations[::-1],
      "categories": [{"id": i, "name": n, "supercategory": "x"}
                     for n, i in sorted(category_id.items(), key=lambda item: -item[1] % 7)],
  }


def write_detection_fixture(root: str,
                            images: Sequence[FixtureImage] = DEFAULT_IMAGES) -> DetectionFixture:
  """Writes ``images`` as a VOC devkit and as COCO JSON under ``root`` (see module docstring)."""
  voc_root = os.path.join(root, "VOCdevkit")
  write_voc(voc_root, images)
  coco_json = os.path.join(root, "coco.json")
  with open(coco_json, "w") as f:
    json.dump(coco_dict(images), f)
  return DetectionFixture(voc_root, coco_json, voc_root, images)


# ---------------------------------------------------------------------------------------------
# tfds mock.


@dataclasses.dataclass
class TfdsMock:
  """What ``mock_tfds_detection`` generated and was asked for."""
  examples: dict[str, list[dict[str, Any]]]  # builder name -> the generated examples.
  splits: list[Any] = dataclasses.field(default_factory=list)  # the split of each read.


def fake_tfds_examples(features, num_examples: int, seed: int) -> list[dict[str, Any]]:
  """Well-formed random examples for a tfds detection ``FeaturesDict`` (VOC or COCO style):
  equal object lengths (0..3), ordered normalized boxes, labels in range, PNG-sized images,
  positive ``objects/area`` where the features have one."""
  rng = np.random.default_rng(seed)
  info = features.get_tensor_info()
  num_classes = features["objects"]["label"].num_classes
  examples = []
  for i in range(num_examples):
    n = int(rng.integers(0, 4))
    lo = rng.uniform(0, 0.5, (n, 2))
    hi = lo + rng.uniform(0.05, 0.5, (n, 2))
    ex = {"image": rng.integers(0, 256, (int(rng.integers(8, 24)), int(rng.integers(8, 24)), 3),
                                dtype=np.uint8),
          "objects": {"bbox": np.concatenate([lo, hi], axis=1).astype(np.float32),
                      "label": rng.integers(0, num_classes, n).astype(np.int64)}}
    for key, spec in info["objects"].items():
      if key == "area":  # COCO's pixel areas (of the segmentation, unrelated to the box).
        ex["objects"][key] = rng.integers(1, 5000, n).astype(_numpy_dtype(spec))
      elif key not in ex["objects"]:  # Flags and ids: random of the right dtype and length.
        ex["objects"][key] = rng.integers(0, 2, n).astype(_numpy_dtype(spec))
    for key, spec in info.items():
      if key == "image/filename":
        ex[key] = f"{i:06d}.jpg"
      elif key == "image/id":
        ex[key] = np.int64(1000 + i)
      elif key not in ex:  # e.g. VOC's image-level labels.
        ex[key] = np.zeros([0 if d is None else d for d in spec.shape], _numpy_dtype(spec))
    examples.append(ex)
  return examples


def _numpy_dtype(spec) -> np.dtype:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  return tf.as_dtype(spec.dtype).as_numpy_dtype


@contextlib.contextmanager
def mock_tfds_detection(num_examples: int = 4, seed: int = 0) -> Iterator[TfdsMock]:
  """``tfds.testing.mock_data`` serving ``fake_tfds_examples`` (the same for every split).

  Images are PNG-encoded when the reader asks for them undecoded (``SkipDecoding``), so decoding
  gives back the generated pixels exactly.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  mock = TfdsMock(examples={})

  def as_dataset(builder, split, decoders=None, read_config=None, shuffle_files=False):
    del read_config, shuffle_files
    mock.splits.append(split)
    name = f"{builder.name}/{builder.builder_config.name}"
    if name not in mock.examples:  # Different datasets get different examples.
      mock.examples[name] = fake_tfds_examples(builder.info.features, num_examples,
                                               seed + zlib.crc32(name.encode()))
    examples = mock.examples[name]
    encode = isinstance((decoders or {}).get("image"), tfds.decode.SkipDecoding)

    def generate():
      for ex in examples:
        yield {**ex, "image": tf.io.encode_png(ex["image"]).numpy() if encode else ex["image"]}

    signature = tf.nest.map_structure(
        lambda t: tf.TensorSpec(t.shape, tf.as_dtype(t.dtype)),
        builder.info.features.get_tensor_info())
    if encode:
      signature["image"] = tf.TensorSpec([], tf.string)
    ds = tf.data.Dataset.from_generator(generate, output_signature=signature)
    return ds.apply(tf.data.experimental.assert_cardinality(len(examples)))

  with tfds.testing.mock_data(as_dataset_fn=as_dataset):
    yield mock


# ---------------------------------------------------------------------------------------------
# A user's own data: one VOC folder, no year level.


def write_voc_folder(root: str, splits: dict[str, Sequence[FixtureImage]]) -> str:
  """Writes ``root/{JPEGImages,Annotations,ImageSets/Main/<split>.txt}`` (one folder, as
  labelling tools export it) with the images of each split; returns ``root``."""
  for sub in ("JPEGImages", "Annotations", os.path.join("ImageSets", "Main")):
    os.makedirs(os.path.join(root, sub), exist_ok=True)
  for split, images in splits.items():
    for image in images:
      write_jpeg(os.path.join(root, "JPEGImages", f"{image.image_id}.jpg"), image.width,
                 image.height, seed=zlib.crc32(image.image_id.encode()))
      with open(os.path.join(root, "Annotations", f"{image.image_id}.xml"), "w") as f:
        f.write(voc_xml(image))
    with open(os.path.join(root, "ImageSets", "Main", f"{split}.txt"), "w") as f:
      f.write("".join(f"{image.image_id}\n" for image in images))
  return root
