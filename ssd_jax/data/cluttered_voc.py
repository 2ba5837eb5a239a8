"""A stand-in for one's own photos: cluttered scenes full of small objects, as one VOC folder.

Real user datasets (a few hundred JPEG photos, many small objects, clutter) cannot be downloaded
here, and ``synthetic_shapes`` (large, clean, plentiful objects) is too easy to tune a recipe on.
``write_voc_folder`` writes ``JPEGImages/``, ``Annotations/`` and ``ImageSets/Main/{trainval,
test}.txt`` as labelling tools export them; ``voc.voc_directory(root, years=())`` reads it.

Generation of one scene (``generate_scene``; ``scene_of(seed, split, index)`` re-creates image
``image_id(split, index)`` of a folder, whose seed is ``(seed, crc32(split), index)``):
  * size: width and height each ``U{300..500}`` pixels.
  * background, drawn at half resolution: two close colours mixed by 4-octave value noise,
    patches of a third colour, 0-3 large polygons (boards, walls), fine grain, soft stripes
    (planks, tiles) in 40% of the images, a lighting gradient and a vignette.
  * clutter, under every object: ``U{15..50}`` textured distractors with shadows, none of an
    object class (irregular blobs, and the shapes that are not classes: ellipse, rectangle,
    diamond), log-uniform 4..120 px, aspect 1/4..4, with the objects' contrast distribution;
    then 60-200 chips of 2-12 px (ellipses, turned rectangles) and 10-40 thin lines.
  * objects: ``U{5..30}`` per image; the class is the shape (default ``triangle, cross, ring``),
    uniform; size ``sqrt(w * h)`` log-uniform in 8..120 px, aspect ``w / h`` log-uniform in
    0.6..1.6 (each side >= 4 px). 60% are placed uniformly, 15% abut an earlier object's box,
    25% overlap one; later objects cover earlier ones, and a position is rejected if it would
    leave any object with more than ``max_occluded`` = 50% of its shape pixels covered (32
    positions per draw, then a new class and size, at most 4 draws per object on average).
    Objects keep off the last row and column (see ``voc_annotation``).
  * appearance: a muted random colour at RGB distance 80..220 from the mean under the shape, or
    25..55 for a quarter of the objects (``low_contrast``); linear shading, grain, a
    second-colour pattern on 30%, softened edges, a drop shadow (one light per scene).
  * camera: sensor noise (luminance, sigma 2..6 grey levels), a box blur of radius 0.2..1 px
    (defocus), gamma 0.8..1.25, a colour cast of +-8%; JPEG quality 85 (4:2:0) on disk.
  The ground-truth box is the pixel extent of the full shape (before occlusion and blur): the
  shapes of ``synthetic_shapes.shape_mask`` touch all four sides of their box.

Measured on the default folder (seed 0, 300 trainval + 100 test): 400 images, 7041 objects
(2351 triangles, 2367 crosses, 2323 rings), 5..30 per image (mean 17.6); ``sqrt(w * h)``
percentiles 10/25/50/75/90 = 10/16/31/62/93 px, 34% under 20 px (16% under 12 px, 24% over
64); 34% of the objects partly covered by a later one (19% of their shape on average, 50% at
most), 80% with a box touching or overlapping another; 25% low contrast. 72 ms per image on one
(shared) core: 29 s for the 400; ``experiments/make_voc_folder.py`` takes 40 s with its imports.
"""

import dataclasses
import os
import zlib
from typing import Any, Sequence
from xml.etree import ElementTree

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ssd_jax.data.synthetic_shapes import SHAPE_NAMES, shape_mask

CLASS_SHAPES = ("triangle", "cross", "ring")
_DISTRACTOR_SHAPES = ("circle", "square", "diamond")  # Those that are not classes are drawn.
_MIN_SIDE = 4  # Pixels: below this the shapes are indistinguishable.
_MODE_PROBS = (0.6, 0.15, 0.25)  # Placement: uniform, abutting an earlier box, overlapping one.
_CANDIDATES = 32  # Positions tried per drawn size.
_SIZE_DRAWS = 4  # Class and size draws per object (on average) before the layout stops.
_CONTRAST, _LOW_CONTRAST = (80.0, 220.0), (25.0, 55.0)  # RGB distance to the mean beneath.
_STRIPES_FRACTION = 0.4
_E1, _E2 = np.array([1, -1, 0]) / np.sqrt(2), np.array([1, 1, -2]) / np.sqrt(6)
_F32 = np.float32


@dataclasses.dataclass(frozen=True)
class SceneConfig:
  """How scenes are drawn (defaults: the module docstring's recipe); sizes in pixels, ranges
  inclusive."""
  class_shapes: tuple[str, ...] = CLASS_SHAPES  # Of SHAPE_NAMES; class k is class_shapes[k].
  side_range: tuple[int, int] = (300, 500)  # Width and height, each uniform.
  num_objects_range: tuple[int, int] = (5, 30)
  size_range: tuple[float, float] = (8.0, 120.0)  # sqrt(w * h), log-uniform.
  aspect_range: tuple[float, float] = (0.6, 1.6)  # w / h, log-uniform.
  max_occluded: float = 0.5  # Fraction of an object's shape pixels later objects may cover.
  num_distractors_range: tuple[int, int] = (15, 50)
  low_contrast_fraction: float = 0.25

  def __post_init__(self):
    if not self.class_shapes or not set(self.class_shapes) <= set(SHAPE_NAMES):
      raise ValueError(f"class_shapes must be some of {SHAPE_NAMES}, got {self.class_shapes}")
    for name, least in (("side_range", 1), ("num_objects_range", 0), ("size_range", 1e-9),
                        ("aspect_range", 1e-9), ("num_distractors_range", 0)):
      lo, hi = getattr(self, name)
      if not least <= lo <= hi:
        raise ValueError(f"{name} must be (lo, hi) with {least:g} <= lo <= hi, got {(lo, hi)}")
    largest = self.size_range[1] * np.sqrt(max(self.aspect_range[1], 1 / self.aspect_range[0]))
    if largest > self.side_range[0] - 1:
      raise ValueError(f"objects up to {largest:.0f} px do not fit in {self.side_range[0]} px")
    if not 0 <= self.max_occluded < 1:
      raise ValueError(f"max_occluded must be in [0, 1), got {self.max_occluded}")


@dataclasses.dataclass(frozen=True)
class Scene:
  """One generated image and its objects (``N`` of them)."""
  image: np.ndarray  # [H, W, 3] uint8, before JPEG encoding.
  boxes: np.ndarray  # [N, 4] float32 pixel xyxy, half-open: columns x0..x1-1, rows y0..y1-1.
  classes: np.ndarray  # [N] int32, 0-based: config.class_shapes[k].
  masks: tuple[np.ndarray, ...]  # N [y1 - y0, x1 - x0] bool: the full shape within its box.
  occluded: np.ndarray  # [N] float32: fraction of the mask covered by later objects.
  low_contrast: np.ndarray  # [N] bool: drawn at low contrast to its surroundings.


def generate_scene(rng: np.random.Generator, config: SceneConfig = SceneConfig()) -> Scene:
  """A cluttered scene (module docstring); objects in drawing order, later ones on top."""
  width, height = (int(s) for s in rng.integers(config.side_range[0], config.side_range[1] + 1, 2))
  # [3, H, W] float32, painted in place below: NumPy blends channels-first planes with an
  # [H, W] opacity 2-4x faster than channels-last pixels.
  canvas = _background(rng, height, width)
  # One light for the scene: every shadow falls the same way (see _paint).
  angle, length = rng.uniform(0, 2 * np.pi), rng.uniform(0.03, 0.12)
  shadow = np.array([length * np.cos(angle), length * np.sin(angle), rng.uniform(0.15, 0.5)])
  _draw_clutter(rng, canvas, config, shadow)
  boxes, classes, masks, occluded = _layout(rng, height, width, config)
  low = rng.random(len(boxes)) < config.low_contrast_fraction
  for (x0, y0, x1, y1), mask, is_low in zip(boxes, masks, low):
    colour = _colour(rng, canvas[:, y0:y1, x0:x1][:, mask].mean(axis=1), is_low)
    _paint(rng, canvas, x0, y0, mask, colour, shadow)
  return Scene(image=_camera(rng, canvas), boxes=boxes.astype(_F32),
               classes=classes.astype(np.int32), masks=tuple(masks),
               occluded=occluded.astype(_F32), low_contrast=low)


def image_id(split: str, index: int) -> str:
  """The file stem of image ``index`` of ``split`` in a folder, e.g. ``'trainval_000007'``."""
  return f"{split}_{index:06d}"


def scene_of(seed: int, split: str, index: int, config: SceneConfig = SceneConfig()) -> Scene:
  """Image ``image_id(split, index)`` of ``write_voc_folder(seed=seed, config=config)``."""
  return generate_scene(np.random.default_rng([seed, zlib.crc32(split.encode()), index]), config)


def voc_annotation(stem: str, width: int, height: int, boxes: np.ndarray,
                   names: Sequence[str]) -> str:
  """The VOC XML of an image ``stem.jpg``; ``boxes`` ``[N, 4]`` integer pixel xyxy, half-open.

  ``bndbox`` holds the box edges in 1-based pixel coordinates, ``xmin = x0 + 1``, ``xmax = x1 +
  1`` (same for y): ``voc.voc_directory`` (like the Caffe SSD loader) subtracts 1 from all four,
  so it reads back exactly the drawn extent ``[x0, x1)``. (The devkit's inclusive reading, last
  column ``xmax``, would see one pixel more; writing ``xmax = x1`` instead would make every box
  one pixel short here, 12% of an 8 px object.) Objects keep off the last row and column, so every
  coordinate is within ``1..width`` / ``1..height``. All objects are ``difficult`` 0.
  """
  root = ElementTree.Element("annotation")
  for tag, text in (("folder", "standin"), ("filename", f"{stem}.jpg")):
    ElementTree.SubElement(root, tag).text = text
  size = ElementTree.SubElement(root, "size")
  for tag, value in (("width", width), ("height", height), ("depth", 3)):
    ElementTree.SubElement(size, tag).text = str(value)
  ElementTree.SubElement(root, "segmented").text = "0"
  for box, name in zip(np.asarray(boxes, np.int64), names):
    obj = ElementTree.SubElement(root, "object")
    for tag, text in (("name", name), ("pose", "Unspecified"), ("truncated", "0"),
                      ("difficult", "0")):
      ElementTree.SubElement(obj, tag).text = text
    bndbox = ElementTree.SubElement(obj, "bndbox")
    for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), box + 1):
      ElementTree.SubElement(bndbox, tag).text = str(int(value))
  ElementTree.indent(root)
  return ElementTree.tostring(root, encoding="unicode") + "\n"


def write_voc_folder(out: str, num_trainval: int = 300, num_test: int = 100, seed: int = 0,
                     config: SceneConfig = SceneConfig(), quality: int = 85,
                     overwrite: bool = False) -> dict[str, Any]:
  """Writes a stand-in dataset as one VOC folder ``out`` (module docstring).

  Files: ``out/JPEGImages/<id>.jpg`` (JPEG ``quality``), ``out/Annotations/<id>.xml``
  (``voc_annotation``; object names are the class shapes), ``out/ImageSets/Main/trainval.txt``
  and ``test.txt``, ids ``image_id(split, k)``. Image ``k`` of a split depends only on ``(seed,
  split, k, config)``, not on the other split's size.

  Args:
    out: the folder; created if missing.
    num_trainval: images in ``trainval``.
    num_test: images in ``test``.
    seed: dataset seed (>= 0).
    config: the scene recipe.
    quality: JPEG quality.
    overwrite: write into a non-empty ``out`` (same-named files are replaced, others kept).

  Returns:
    ``summarize``'s statistics of the folder, plus ``root`` (``out``) and ``splits`` (images
    per split).

  Raises:
    FileExistsError: ``out`` is not empty and not ``overwrite``.
  """
  if os.path.isdir(out) and os.listdir(out) and not overwrite:
    raise FileExistsError(f"{out} is not empty; choose an empty or new folder, or overwrite")
  dirs = {sub: os.path.join(out, sub) for sub in ("JPEGImages", "Annotations", "ImageSets/Main")}
  for path in dirs.values():
    os.makedirs(path, exist_ok=True)
  stats: dict[str, list[np.ndarray]] = {"boxes": [], "classes": [], "occluded": [],
                                        "low_contrast": []}
  for split, count in (("trainval", num_trainval), ("test", num_test)):
    stems = [image_id(split, k) for k in range(count)]
    for k, stem in enumerate(stems):
      scene = scene_of(seed, split, k, config)
      Image.fromarray(scene.image).save(os.path.join(dirs["JPEGImages"], f"{stem}.jpg"),
                                        quality=quality)
      height, width = scene.image.shape[:2]
      names = [config.class_shapes[c] for c in scene.classes]
      with open(os.path.join(dirs["Annotations"], f"{stem}.xml"), "w") as f:
        f.write(voc_annotation(stem, width, height, scene.boxes, names))
      for key, values in stats.items():  # Not the pixels: 400 images would hold ~200 MB.
        values.append(getattr(scene, key))
    with open(os.path.join(dirs["ImageSets/Main"], f"{split}.txt"), "w") as f:
      f.write("".join(f"{stem}\n" for stem in stems))
  return {"root": out, "splits": {"trainval": num_trainval, "test": num_test},
          **summarize(**stats, class_names=config.class_shapes)}


def summarize(boxes: Sequence[np.ndarray], classes: Sequence[np.ndarray],
              occluded: Sequence[np.ndarray], low_contrast: Sequence[np.ndarray],
              class_names: Sequence[str]) -> dict[str, Any]:
  """Statistics of a dataset, given each image's ``Scene`` fields of the same names.

  Returns:
    A dict: ``images``, ``objects``, ``objects_per_image`` (min, mean, max),
    ``size_percentiles`` (10..90 of ``sqrt(w * h)``, px), the fractions of objects
    ``fraction_under_20px``, ``fraction_occluded`` (partly, by a later object),
    ``fraction_in_contact`` (box touching or overlapping another), ``fraction_low_contrast``;
    ``class_names`` and ``class_counts``.
  """
  counts = np.array([len(b) for b in boxes], np.int64)
  per_object = lambda arrays: np.concatenate([np.zeros(0)] + [np.asarray(a, float) for a in arrays])
  mean = lambda values: float(np.mean(values)) if len(values) else 0.0
  xyxy = np.concatenate([np.zeros((0, 4))] + list(boxes))
  sizes = np.sqrt(np.prod(xyxy[:, 2:] - xyxy[:, :2], axis=1))
  return {
      "images": len(counts), "objects": int(counts.sum()),
      "objects_per_image": {"min": int(counts.min()) if len(counts) else 0,
                            "mean": mean(counts), "max": int(counts.max(initial=0))},
      "size_percentiles": {p: float(np.percentile(sizes, p)) if len(sizes) else 0.0
                           for p in (10, 25, 50, 75, 90)},
      "fraction_under_20px": mean(sizes < 20),
      "fraction_occluded": mean(per_object(occluded) > 0),
      "fraction_in_contact": mean(per_object(_in_contact(b) for b in boxes)),
      "fraction_low_contrast": mean(per_object(low_contrast)),
      "class_names": list(class_names),
      "class_counts": np.bincount(per_object(classes).astype(int),
                                  minlength=len(class_names)).tolist(),
  }


def _in_contact(boxes: np.ndarray) -> np.ndarray:
  """``[N]`` bool: whether box ``k`` of ``[N, 4]`` touches or overlaps another (closed boxes)."""
  meet = np.all((boxes[:, None, :2] <= boxes[None, :, 2:])
                & (boxes[None, :, :2] <= boxes[:, None, 2:]), axis=-1)
  np.fill_diagonal(meet, False)
  return meet.any(axis=1)


def _layout(rng: np.random.Generator, height: int, width: int,
            config: SceneConfig) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], np.ndarray]:
  """Objects in drawing order: ``[N, 4]`` int xyxy boxes, ``[N]`` classes, shape masks and
  ``[N]`` occluded fractions, no object covered by more than ``config.max_occluded``."""
  owner = np.full((height, width), -1, np.int32)  # The topmost object at each pixel.
  boxes, classes, masks = np.zeros((0, 4), np.int64), [], []
  visible, areas = np.zeros(0, np.int64), np.zeros(0, np.int64)  # Shape pixels per object.
  log_size, log_aspect = np.log(config.size_range), np.log(config.aspect_range)
  target = rng.integers(config.num_objects_range[0], config.num_objects_range[1] + 1)
  for _ in range(target * _SIZE_DRAWS):
    if len(boxes) == target:
      break
    cls = int(rng.integers(len(config.class_shapes)))
    size, aspect = np.exp(rng.uniform(*log_size)), np.exp(rng.uniform(*log_aspect))
    w = max(_MIN_SIDE, int(round(size * np.sqrt(aspect))))
    h = max(_MIN_SIDE, int(round(size / np.sqrt(aspect))))
    mask = shape_mask(config.class_shapes[cls], h, w)
    for x0, y0 in _candidates(rng, w, h, width, height, boxes):
      under = owner[y0:y0 + h, x0:x0 + w][mask]
      covered = np.bincount(under[under >= 0], minlength=len(boxes))
      if np.all(visible - covered >= (1 - config.max_occluded) * areas):
        owner[y0:y0 + h, x0:x0 + w][mask] = len(boxes)
        boxes = np.concatenate([boxes, [[x0, y0, x0 + w, y0 + h]]])
        visible = np.append(visible - covered, mask.sum())
        areas = np.append(areas, mask.sum())
        classes.append(cls)
        masks.append(np.array(mask))
        break
  return boxes, np.array(classes, np.int64), masks, 1 - visible / np.maximum(areas, 1)


def _candidates(rng: np.random.Generator, w: int, h: int, width: int, height: int,
                boxes: np.ndarray) -> np.ndarray:
  """``[T, 2]`` top-left corners for a ``w x h`` box: uniform, abutting or overlapping one of
  the placed ``boxes`` ``[P, 4]``, each box off the last row and column of the image."""
  hi = np.array([width - 1 - w, height - 1 - h])
  mode = rng.choice(3, p=_MODE_PROBS) if len(boxes) else 0
  if mode == 0:
    return rng.integers(0, hi + 1, (_CANDIDATES, 2))
  size = np.array([w, h])
  anchor = boxes[rng.integers(len(boxes), size=_CANDIDATES)]
  corner = rng.integers(anchor[:, :2] - size + 1, anchor[:, 2:])  # Boxes intersect.
  if mode == 1:  # Pushed out along one axis to abut the anchor's side.
    rows, axis = np.arange(_CANDIDATES), rng.integers(2, size=_CANDIDATES)
    after = rng.random(_CANDIDATES) < 0.5
    corner[rows, axis] = np.where(after, anchor[rows, 2 + axis], anchor[rows, axis] - size[axis])
  return np.clip(corner, 0, hi)


def _value_noise(rng: np.random.Generator, height: int, width: int, cells: float) -> np.ndarray:
  """``[H, W]`` float32 smooth noise: random values on a grid of ``cells`` cells along the
  longer side, bicubically upsampled (so roughly in ``[0, 1]``)."""
  scale = cells / max(height, width)
  grid = rng.random((max(2, round(height * scale) + 1), max(2, round(width * scale) + 1)), _F32)
  return np.asarray(Image.fromarray(grid).resize((width, height), Image.BICUBIC))


def _octave_noise(rng: np.random.Generator, height: int, width: int, cells: float,
                  octaves: int, persistence: float = 0.55) -> np.ndarray:
  """``[H, W]`` float32 in ``[0, 1]``: value noise summed over octaves (fractal texture)."""
  total = sum(persistence**o * _value_noise(rng, height, width, cells * 2**o)
              for o in range(octaves))
  return (total - total.min()) / max(float(total.max() - total.min()), 1e-6)


def _natural_colours(rng: np.random.Generator, n: int) -> np.ndarray:
  """``[n, 3]`` float32 RGB, mostly muted like photographed materials: a grey level plus a
  chroma of random hue whose size is skewed towards 0."""
  grey, hue, chroma = rng.random((3, n, 1))
  hue *= 2 * np.pi
  # (e1, e2): an orthonormal basis of the plane orthogonal to the grey axis (1, 1, 1).
  rgb = 25 + 210 * grey + 110 * chroma**1.5 * (np.cos(hue) * _E1 + np.sin(hue) * _E2)
  return np.clip(rgb, 0, 255).astype(_F32)


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
  """``[3, H, W]`` float32: a textured, unevenly lit surface (module docstring)."""
  # Drawn at half resolution and upsampled: 4x cheaper, and nothing in it is finer than 2 px.
  full, (height, width) = (height, width), ((height + 1) // 2, (width + 1) // 2)
  base, patch = _natural_colours(rng, 2)[:, :, None, None]
  near = np.clip(base + rng.normal(0, 35, (3, 1, 1)), 0, 255).astype(_F32)
  image = base + (near - base) * _octave_noise(rng, height, width, rng.uniform(1.5, 4), 4)
  patches = _octave_noise(rng, height, width, rng.uniform(2, 6), 3)
  patches = patches * patches * patches * rng.uniform(0.3, 0.9)  # Cubed: a few distinct ones.
  image += (patch - image) * patches
  _draw_structures(rng, image)
  grain = _octave_noise(rng, height, width, rng.uniform(40, 120), 2) - 0.5
  image += rng.uniform(10, 50) * grain  # Gravel, fabric, foliage.
  theta, side = rng.uniform(0, np.pi), max(height, width)
  x = np.arange(width, dtype=_F32)[None, :] / side
  y = np.arange(height, dtype=_F32)[:, None] / side
  along = np.cos(theta) * x + np.sin(theta) * y
  vignette = (x - x.mean()) ** 2 + (y - y.mean()) ** 2
  light = 1 + rng.uniform(-0.3, 0.3) * (along - along.mean()) - rng.uniform(0, 0.8) * vignette
  if rng.random() < _STRIPES_FRACTION:
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(4, 20) * along + rng.uniform(0, 6.3))
    light *= 1 - rng.uniform(0.1, 0.35) * stripes
  return np.stack([np.asarray(Image.fromarray(plane).resize(full[::-1], Image.BILINEAR))
                   for plane in image * light])


def _draw_structures(rng: np.random.Generator, image: np.ndarray) -> None:
  """Paints 0-3 large polygons (boards, walls, shelves: 3-6 corners spread over most of the
  image) of random colours at half to full opacity onto ``image`` ``[3, H, W]``."""
  height, width = image.shape[1:]
  for _ in range(rng.integers(0, 4)):
    centre, spread = rng.uniform(0, [width, height]), rng.uniform(0.3, 1.0) * max(height, width)
    offsets = rng.uniform(-spread, spread, (int(rng.integers(3, 7)), 2))
    corners = centre + offsets[np.argsort(np.arctan2(offsets[:, 1], offsets[:, 0]))]  # No bow ties.
    mask = Image.new("L", (width, height))
    ImageDraw.Draw(mask).polygon([tuple(c) for c in corners], fill=int(rng.uniform(128, 256)))
    alpha = np.asarray(mask, _F32) / 255
    image += alpha * (_natural_colours(rng, 1)[0, :, None, None] - image)


def _draw_clutter(rng: np.random.Generator, canvas: np.ndarray, config: SceneConfig,
                  shadow: np.ndarray) -> None:
  """Paints textured distractors (blobs and the shapes that are no class, with shadows), then
  debris (``_draw_debris``) onto ``canvas`` ``[3, H, W]``."""
  height, width = canvas.shape[1:]
  shapes = [s for s in _DISTRACTOR_SHAPES if s not in config.class_shapes]
  lo, hi = config.num_distractors_range
  for _ in range(rng.integers(lo, hi + 1)):
    size, aspect = np.exp(rng.uniform(np.log(4), np.log(120))), np.exp(rng.uniform(-1.4, 1.4))
    w, h = max(2, int(size * np.sqrt(aspect))), max(2, int(size / np.sqrt(aspect)))
    if shapes and rng.random() < 0.5:
      mask = shape_mask(shapes[rng.integers(len(shapes))], h, w)
    else:
      mask = _blob_mask(rng, h, w)
    x0, y0 = int(rng.integers(-w // 2, width - w // 2)), int(rng.integers(-h // 2, height - h // 2))
    beneath = canvas[:, max(y0, 0):y0 + h, max(x0, 0):x0 + w].mean(axis=(1, 2))
    _paint(rng, canvas, x0, y0, mask,
           _colour(rng, beneath, rng.random() < config.low_contrast_fraction), shadow)
  _draw_debris(rng, canvas)


def _draw_debris(rng: np.random.Generator, canvas: np.ndarray) -> None:
  """Paints 60-200 chips (2-12 px ellipses and turned rectangles: seeds, dust, gravel) and 10-40
  lines (1-3 px wide, 10-150 px long: twigs, cables, edges) of random colours and opacities
  onto ``canvas`` ``[3, H, W]``; drawn by PIL, far cheaper per item than ``_paint``."""
  height, width = canvas.shape[1:]
  layer = Image.new("RGBA", (width, height))
  draw = ImageDraw.Draw(layer)
  num_chips, num_lines = int(rng.integers(60, 201)), int(rng.integers(10, 41))
  n = num_chips + num_lines
  fills = np.concatenate([_natural_colours(rng, n), rng.uniform(60, 230, (n, 1))], axis=1)
  centres, angles = rng.uniform(0, [width, height], (n, 2)), rng.uniform(0, 2 * np.pi, n)
  # Half sizes of the chips; the lines' half lengths and widths.
  half = np.exp(rng.uniform(0, np.log(6), (n, 2)))
  half[num_chips:] = np.stack([np.exp(rng.uniform(np.log(5), np.log(75), num_lines)),
                               rng.integers(1, 4, num_lines)], axis=1)
  along = half[:, :1] * np.stack([np.cos(angles), np.sin(angles)], axis=1)  # [n, 2]
  across = half[:, 1:] * np.stack([-np.sin(angles), np.cos(angles)], axis=1)
  corners = centres[:, None] + np.stack([along + across, along - across, -along - across,
                                         -along + across], axis=1)  # [n, 4, 2]
  for k, fill in enumerate(map(tuple, fills.astype(int))):
    if k >= num_chips:
      ends = [tuple(centres[k] + along[k]), tuple(centres[k] - along[k])]
      draw.line(ends, fill=fill, width=int(half[k, 1]))
    elif k % 2:  # Ellipses and rectangles alternately.
      draw.ellipse([tuple(centres[k] - half[k]), tuple(centres[k] + half[k])], fill=fill)
    else:
      draw.polygon([tuple(c) for c in corners[k]], fill=fill)
  rgba = np.asarray(layer, _F32).transpose(2, 0, 1)
  canvas += rgba[3] / 255 * (rgba[:3] - canvas)


def _blob_mask(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
  """``[h, w]`` bool: an irregular blob (an ellipse with a noisy outline)."""
  v, u = _ramp(h, 1)[:, None], _ramp(w, 1)[None, :]
  return u * u + v * v + 0.9 * (_value_noise(rng, h, w, 3) - 0.5) < 0.75


def _colour(rng: np.random.Generator, beneath: np.ndarray, low_contrast: bool) -> np.ndarray:
  """``[3]`` RGB whose distance to ``beneath`` ``[3]`` is near a random draw from
  ``_LOW_CONTRAST`` or ``_CONTRAST`` (the closest of 32 ``_natural_colours``)."""
  target = rng.uniform(*(_LOW_CONTRAST if low_contrast else _CONTRAST))
  candidates = _natural_colours(rng, 32)
  distance = np.linalg.norm(candidates - beneath, axis=1)
  return candidates[np.argmin(np.abs(distance - target))]


def _texture(rng: np.random.Generator, colour: np.ndarray, h: int, w: int) -> np.ndarray:
  """``[3, h, w]`` float32: ``colour`` lit from a random side, with grain and (30% of those
  12 px or more) a blotchy pattern of a second colour: a flat shape looks lit and textured."""
  angle, strength = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.4)
  u = _ramp(w, strength * np.cos(angle))
  v = _ramp(h, strength * np.sin(angle))
  layer = colour[:, None, None] * (1 + u[None, :] + v[:, None])
  if min(h, w) >= 12 and rng.random() < 0.3:
    blotches = np.clip(_value_noise(rng, h, w, rng.uniform(2, 5)), 0, 1)
    layer += (_natural_colours(rng, 1)[0, :, None, None] - layer) * 0.5 * blotches
  return layer + _grain(rng, (h, w), rng.uniform(0, 15))


def _ramp(n: int, end: float) -> np.ndarray:
  """``[n]`` float32 from ``-end`` to ``end`` (``np.linspace``, without its overhead)."""
  return (np.arange(n, dtype=_F32) - np.float32((n - 1) / 2)) * np.float32(2 * end / max(n - 1, 1))


def _paint(rng: np.random.Generator, canvas: np.ndarray, x0: int, y0: int, mask: np.ndarray,
           colour: np.ndarray, shadow: np.ndarray) -> None:
  """Paints a textured shape ``mask`` ``[h, w]`` of ``colour`` ``[3]`` at top-left ``(x0, y0)``
  of ``canvas``, with softened edges (``_soften``), over a drop shadow.

  ``shadow``: ``(dx, dy, opacity)``, the shadow's offset per pixel of the shape's size
  (``sqrt(h * w)``) and its darkness; one light for the whole scene.
  """
  pad = 1  # Room for the softened edge.
  alpha = _soften(mask, rng.uniform(0.3, 1.0))
  dx, dy = np.round(shadow[:2] * np.sqrt(mask.size)).astype(int)
  if dx or dy:  # (A shadow right beneath would be hidden.)
    _composite(canvas, x0 - pad + dx, y0 - pad + dy, None, shadow[2] * alpha)
  _composite(canvas, x0 - pad, y0 - pad, _texture(rng, colour, *alpha.shape), alpha)


def _soften(mask: np.ndarray, amount: float) -> np.ndarray:
  """``[h + 2, w + 2]`` float32 opacity: ``mask`` ``[h, w]`` padded by a pixel, mixed by
  ``amount`` in ``[0, 1]`` with its [1, 2, 1] / 4 blur (a Gaussian of sigma ~0.7 px): anti-aliased
  or slightly out-of-focus edges, cheaper than ``ndimage.gaussian_filter`` on small masks."""
  sharp = np.zeros((mask.shape[0] + 4, mask.shape[1] + 4), _F32)
  sharp[2:-2, 2:-2] = mask
  rows = sharp[:-2] + 2 * sharp[1:-1] + sharp[2:]
  blurred = (rows[:, :-2] + 2 * rows[:, 1:-1] + rows[:, 2:]) / 16
  return sharp[1:-1, 1:-1] + amount * (blurred - sharp[1:-1, 1:-1])


def _composite(canvas: np.ndarray, x0: int, y0: int, layer: np.ndarray | None,
               alpha: np.ndarray) -> None:
  """Blends ``layer`` ``[3, h, w]`` (None: black, a shadow) with opacity ``alpha`` ``[h, w]``
  into ``canvas`` ``[3, H, W]`` at top-left ``(x0, y0)`` (may be negative), clipped to it."""
  h, w = alpha.shape
  cx0, cy0 = max(x0, 0), max(y0, 0)
  cx1, cy1 = min(x0 + w, canvas.shape[2]), min(y0 + h, canvas.shape[1])
  if cx0 >= cx1 or cy0 >= cy1:
    return
  inner = (slice(cy0 - y0, cy1 - y0), slice(cx0 - x0, cx1 - x0))
  region = canvas[:, cy0:cy1, cx0:cx1]
  if layer is None:
    region *= 1 - alpha[inner]
  else:
    region += alpha[inner] * (layer[(slice(None),) + inner] - region)


def _camera(rng: np.random.Generator, canvas: np.ndarray) -> np.ndarray:
  """``[H, W, 3]`` uint8 of ``canvas`` ``[3, H, W]``: sensor noise, a soft lens, exposure and
  colour cast, in PIL where it can be (3x faster than NumPy here)."""
  # Luminance noise (JPEG's 4:2:0 would smooth colour noise away), before the blur, which makes
  # it grainy like a demosaiced sensor's rather than per-pixel.
  noisy = canvas + _grain(rng, (1,) + canvas.shape[1:], rng.uniform(2, 6))
  levels = np.clip(noisy, 0, 255).astype(np.uint8).transpose(1, 2, 0)
  # A box (disc-like) defocus kernel: radius r weighs the centre 1 and both neighbours r.
  image = Image.fromarray(np.ascontiguousarray(levels)).filter(
      ImageFilter.BoxBlur(rng.uniform(0.2, 1.0)))
  curve = (np.arange(256) / 255) ** rng.uniform(0.8, 1.25)  # Exposure.
  table = np.clip(np.round(255 * curve[None] * rng.uniform(0.92, 1.08, (3, 1))), 0, 255)
  return np.array(image.point(table.astype(int).ravel().tolist()))


def _grain(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> np.ndarray:
  """Zero-mean uniform noise of standard deviation ``std``: 4x faster to draw than Gaussian
  noise, and indistinguishable from it after blending, blur and JPEG."""
  return (rng.random(shape, _F32) - 0.5) * np.float32(std * np.sqrt(12))
