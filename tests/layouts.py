r"""The same five tiny annotated images in every folder layout ``ssd_jax.data.folder`` reads.

The folders are committed under ``tests/data/layouts/`` (a few KB); this module is their ground
truth and the script that wrote them:

  python -m tests.layouts tests/data/layouts

Each layout encodes :data:`IMAGES` as its tool would: VOC XML (1-based pixel ``bndbox``, so
``xmin = x0 + 1``), YOLO (``class cx cy w h`` normalized), COCO (``bbox = [x, y, w, h]`` in
pixels). File names are a camera's and a labelling tool's (``IMG_0001.JPG``, ``.jpeg``,
``.png``); one image has no objects.
"""

import dataclasses
import json
import os
import shutil
import sys
from typing import Callable

import numpy as np
from PIL import Image

CLASSES = ("apple", "pear")


@dataclasses.dataclass(frozen=True)
class LayoutImage:
  file_name: str
  width: int
  height: int
  objects: tuple[tuple[str, tuple[float, float, float, float]], ...]  # (class, pixel xyxy)
  split: str  # 'train' or 'test' in the layouts that have splits

  @property
  def stem(self) -> str:
    return os.path.splitext(self.file_name)[0]


IMAGES = (
    LayoutImage("IMG_0001.JPG", 48, 36, (("apple", (4, 5, 20, 30)), ("pear", (25, 8, 44, 33))),
                "train"),
    LayoutImage("IMG_0002.jpeg", 40, 40, (("pear", (2, 2, 38, 20)),), "train"),
    LayoutImage("photo3.png", 36, 48, (("apple", (10, 10, 30, 40)),), "train"),
    LayoutImage("IMG_0004.JPG", 48, 36, (("apple", (0, 0, 48, 36)), ("pear", (6, 3, 18, 30))),
                "test"),
    LayoutImage("empty5.jpg", 40, 30, (), "test"),
)


def _write_image(path: str, image: LayoutImage, seed: int) -> None:
  small = np.random.default_rng(seed).integers(0, 256, (3, 3, 3), dtype=np.uint8)
  pil = Image.fromarray(small).resize((image.width, image.height), Image.BILINEAR)
  pil.save(path, format="PNG" if path.lower().endswith(".png") else "JPEG", quality=80)


def _voc_xml(image: LayoutImage, filename: bool = True) -> str:
  objects = "".join(
      f"<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>{x0 + 1:g}</xmin>"
      f"<ymin>{y0 + 1:g}</ymin><xmax>{x1 + 1:g}</xmax><ymax>{y1 + 1:g}</ymax></bndbox></object>"
      for name, (x0, y0, x1, y1) in image.objects)
  name = f"<filename>{image.file_name}</filename>" if filename else ""
  # labelImg writes the labeller's own absolute path; readers must not rely on it.
  return (f"<annotation><folder>photos</folder>{name}<path>C:\\Users\\me\\{image.file_name}"
          f"</path><size><width>{image.width}</width><height>{image.height}</height>"
          f"<depth>3</depth></size>{objects}</annotation>")


def _yolo_txt(image: LayoutImage) -> str:
  lines = []
  for name, (x0, y0, x1, y1) in image.objects:
    w, h = image.width, image.height
    lines.append(f"{CLASSES.index(name)} {(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} "
                 f"{(x1 - x0) / w:.6f} {(y1 - y0) / h:.6f}\n")
  return "".join(lines)


def _coco(images: list[LayoutImage]) -> dict:
  annotations = [{"id": len(images) * 10 + k * 3 + j, "image_id": k + 1, "category_id": 1 + CLASSES.index(name),
                  "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
                  "iscrowd": 0}
                 for k, image in enumerate(images)
                 for j, (name, (x0, y0, x1, y1)) in enumerate(image.objects)]
  return {"images": [{"id": k + 1, "file_name": im.file_name, "width": im.width,
                      "height": im.height} for k, im in enumerate(images)],
          "annotations": annotations,
          "categories": [{"id": k + 1, "name": n} for k, n in enumerate(CLASSES)]}


def _put(root: str, relative: str, content: str) -> None:
  path = os.path.join(root, relative)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    f.write(content)


def _images(root: str, folder: Callable[[LayoutImage], str]) -> None:
  for k, image in enumerate(IMAGES):
    path = os.path.join(root, folder(image), image.file_name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _write_image(path, image, seed=k)


def voc_devkit(root: str) -> None:
  """``Annotations/`` + ``JPEGImages/`` + ``ImageSets/Main/{trainval,test}.txt`` (labelImg's
  PascalVOC output, split by hand); one XML without ``<filename>``."""
  _images(root, lambda image: "JPEGImages")
  for k, image in enumerate(IMAGES):
    _put(root, f"Annotations/{image.stem}.xml", _voc_xml(image, filename=k != 1))
  for split in ("trainval", "test"):
    ids = [im.stem for im in IMAGES if {"trainval": "train"}.get(split, split) == im.split]
    _put(root, f"ImageSets/Main/{split}.txt", "".join(f"{i}\n" for i in ids))


def voc_beside(root: str) -> None:
  """labelImg's default: each XML beside its image, one folder, no splits."""
  _images(root, lambda image: "")
  for image in IMAGES:
    _put(root, f"{image.stem}.xml", _voc_xml(image))


def voc_split_folders(root: str) -> None:
  """Roboflow's Pascal VOC export: ``train/`` and ``test/``, XML beside the images."""
  _images(root, lambda image: image.split)
  for image in IMAGES:
    _put(root, f"{image.split}/{image.stem}.xml", _voc_xml(image))


def yolo_ultralytics(root: str) -> None:
  """Ultralytics: ``images/{train,val}/`` + ``labels/{train,val}/`` + ``data.yaml`` (names as a
  dict); no test split, so ``val`` is reported."""
  split = lambda image: {"test": "val"}.get(image.split, image.split)
  _images(root, lambda image: f"images/{split(image)}")
  for image in IMAGES:
    if image.objects:  # A background image has no label file.
      _put(root, f"labels/{split(image)}/{image.stem}.txt", _yolo_txt(image))
  names = "".join(f"  {k}: {n}\n" for k, n in enumerate(CLASSES))
  _put(root, "data.yaml", f"path: .\ntrain: images/train\nval: images/val\nnames:\n{names}")


def yolo_roboflow(root: str) -> None:
  """Roboflow's YOLO export: ``{train,test}/{images,labels}/`` + ``data.yaml`` (names a list)."""
  _images(root, lambda image: f"{image.split}/images")
  for image in IMAGES:
    _put(root, f"{image.split}/labels/{image.stem}.txt", _yolo_txt(image))
  _put(root, "data.yaml", f"train: ../train/images\ntest: ../test/images\nnc: {len(CLASSES)}\n"
       f"names: {list(CLASSES)}\n")


def yolo_labelimg(root: str) -> None:
  """labelImg's YOLO mode: ``.txt`` beside the images and ``classes.txt``; no splits."""
  _images(root, lambda image: "")
  for image in IMAGES:
    _put(root, f"{image.stem}.txt", _yolo_txt(image))
  _put(root, "classes.txt", "".join(f"{n}\n" for n in CLASSES))


def coco_roboflow(root: str) -> None:
  """Roboflow's COCO export: ``{train,test}/_annotations.coco.json`` beside the images."""
  _images(root, lambda image: image.split)
  for split in ("train", "test"):
    _put(root, f"{split}/_annotations.coco.json",
         json.dumps(_coco([im for im in IMAGES if im.split == split])))


LAYOUTS = {f.__name__: f for f in (voc_devkit, voc_beside, voc_split_folders, yolo_ultralytics,
                                   yolo_roboflow, yolo_labelimg, coco_roboflow)}


def main(out: str) -> None:
  for name, write in LAYOUTS.items():
    shutil.rmtree(os.path.join(out, name), ignore_errors=True)
    write(os.path.join(out, name))


if __name__ == "__main__":
  main(sys.argv[1])
