"""Default boxes ("priors") of SSD: layout specs, the Caffe presets and the paper's formula.

A :class:`PriorSpec` describes one layout in the Caffe ``PriorBox`` vocabulary (pixels of a
square ``image_size`` input). :func:`generate` turns it into ``[P, 4]`` normalized cxcywh priors,
ordered layer by layer, then row (y) by row, column (x) by column, then box within the cell. The
per-cell order is Caffe's: the ``min_size`` square, the ``sqrt(min_size * max_size)`` square (if
the layer has a max size), then for each aspect ratio ``a`` a box of ratio ``a`` followed (when
``flip``) by one of ratio ``1/a``. A head predicting ``boxes_per_cell[k]`` boxes per location
therefore lines up with these priors when its channels are reshaped ``[H, W, boxes, 4]``.

Layouts fitted to a dataset's box shapes (k-means with ``1 - IoU``) come from
:mod:`ssd_jax.priors.kmeans`.
"""

import dataclasses
import math
from typing import Optional, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class PriorSpec:
  """A prior layout for a square input of ``image_size`` pixels.

  Attributes:
    image_size: input side in pixels (sizes and steps below are in the same pixels).
    feature_map_sizes: side of each source feature map, e.g. ``(38, 19, 10, 5, 3, 1)``.
    steps: pixel distance between neighbouring cell centres per layer (Caffe ``step``).
    min_sizes: side of the ratio-1 box per layer (``s_k * image_size``).
    max_sizes: per layer, the extra ratio-1 box has side ``sqrt(min_size * max_size)``;
      ``None`` (whole field or one entry) means no extra box.
    aspect_ratios: per layer, the ratios ``a > 0, a != 1`` (``w / h``) besides 1.
    flip: also add ``1 / a`` for every ratio (Caffe ``flip: true``).
    clip: clip the priors (as xyxy) to the image.
    offset: centre of cell ``i`` is ``(i + offset) * step``.
    layer_names: optional name per layer (e.g. the source feature map) for the model and reports.
  """
  image_size: float
  feature_map_sizes: tuple[int, ...]
  steps: tuple[float, ...]
  min_sizes: tuple[float, ...]
  max_sizes: Optional[tuple[Optional[float], ...]]
  aspect_ratios: tuple[tuple[float, ...], ...]
  flip: bool = True
  clip: bool = False
  offset: float = 0.5
  layer_names: Optional[tuple[str, ...]] = None

  def __post_init__(self):
    _validate(self)

  @property
  def num_layers(self) -> int:
    return len(self.feature_map_sizes)

  @property
  def boxes_per_cell(self) -> tuple[int, ...]:
    """Number of priors at each location, per layer."""
    return tuple(len(_cell_sizes(self, k)) for k in range(self.num_layers))

  @property
  def boxes_per_layer(self) -> tuple[int, ...]:
    return tuple(f * f * b for f, b in zip(self.feature_map_sizes, self.boxes_per_cell))

  @property
  def num_priors(self) -> int:
    return sum(self.boxes_per_layer)

  @property
  def scales(self) -> tuple[float, ...]:
    """``s_k``: min sizes as fractions of the image side."""
    return tuple(s / self.image_size for s in self.min_sizes)


def _validate(spec: PriorSpec) -> None:
  """Raises ValueError naming the offending field."""
  n = len(spec.feature_map_sizes)
  if n == 0:
    raise ValueError("PriorSpec.feature_map_sizes must name at least one layer")
  if not spec.image_size > 0:
    raise ValueError(f"PriorSpec.image_size must be > 0, got {spec.image_size}")
  per_layer = {"steps": spec.steps, "min_sizes": spec.min_sizes,
               "aspect_ratios": spec.aspect_ratios}
  if spec.max_sizes is not None:
    per_layer["max_sizes"] = spec.max_sizes
  if spec.layer_names is not None:
    per_layer["layer_names"] = spec.layer_names
  for name, values in per_layer.items():
    if len(values) != n:
      raise ValueError(f"PriorSpec.{name} has {len(values)} entries but feature_map_sizes has "
                       f"{n}")
  for k, f in enumerate(spec.feature_map_sizes):
    if int(f) != f or f <= 0:
      raise ValueError(f"PriorSpec.feature_map_sizes[{k}] must be a positive integer, got {f}")
  for name in ("steps", "min_sizes"):
    for k, v in enumerate(getattr(spec, name)):
      if not (math.isfinite(v) and v > 0):
        raise ValueError(f"PriorSpec.{name}[{k}] must be finite and > 0, got {v}")
  for k, v in enumerate(spec.max_sizes or ()):
    if v is not None and not (math.isfinite(v) and v > 0):
      raise ValueError(f"PriorSpec.max_sizes[{k}] must be finite and > 0 or None, got {v}")
  for k, ratios in enumerate(spec.aspect_ratios):
    for a in ratios:
      if not (math.isfinite(a) and a > 0):
        raise ValueError(f"PriorSpec.aspect_ratios[{k}] must hold positive ratios, got {a}")
      if math.isclose(a, 1.0):
        raise ValueError(f"PriorSpec.aspect_ratios[{k}] must not contain 1 (the ratio-1 boxes "
                         "come from min_sizes/max_sizes)")
  if not 0 <= spec.offset <= 1:
    raise ValueError(f"PriorSpec.offset must be in [0, 1], got {spec.offset}")


def _cell_sizes(spec: PriorSpec, k: int) -> list[tuple[float, float]]:
  """``(w, h)`` in pixels of the boxes at one location of layer ``k``, in Caffe order."""
  s = spec.min_sizes[k]
  sizes = [(s, s)]
  max_size = spec.max_sizes[k] if spec.max_sizes is not None else None
  if max_size is not None:
    s_prime = math.sqrt(s * max_size)
    sizes.append((s_prime, s_prime))
  for a in spec.aspect_ratios[k]:
    ratios = (a, 1.0 / a) if spec.flip else (a,)
    sizes.extend((s * math.sqrt(r), s / math.sqrt(r)) for r in ratios)
  return sizes


def generate(spec: PriorSpec) -> np.ndarray:
  """All priors of ``spec`` as a float32 ``[P, 4]`` array of normalized cxcywh."""
  layers = []
  for k, f in enumerate(spec.feature_map_sizes):
    centers = (np.arange(f, dtype=np.float64) + spec.offset) * spec.steps[k]
    cy, cx = np.meshgrid(centers, centers, indexing="ij")  # row-major: y outer, x inner
    wh = np.asarray(_cell_sizes(spec, k), np.float64)  # [A, 2]
    a = len(wh)
    boxes = np.concatenate([
        np.broadcast_to(np.stack([cx, cy], -1)[:, :, None, :], (f, f, a, 2)),
        np.broadcast_to(wh[None, None], (f, f, a, 2)),
    ], axis=-1)
    layers.append(boxes.reshape(-1, 4))
  priors = np.concatenate(layers, axis=0) / spec.image_size
  if spec.clip:
    xyxy = np.concatenate([priors[:, :2] - priors[:, 2:] / 2, priors[:, :2] + priors[:, 2:] / 2],
                          -1).clip(0.0, 1.0)
    priors = np.concatenate([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], -1)
  return priors.astype(np.float32)


def linear_scales(num_layers: int, s_min: float = 0.2, s_max: float = 0.9) -> list[float]:
  """The paper's ``s_k = s_min + (s_max - s_min) (k - 1) / (m - 1)``, k = 1..m."""
  if num_layers == 1:
    return [float(s_min)]
  return [s_min + (s_max - s_min) * k / (num_layers - 1) for k in range(num_layers)]


def from_linear_scales(feature_map_sizes: Sequence[int], s_min: float = 0.2,
                       s_max: float = 0.9,
                       aspect_ratios: Sequence[Sequence[float]] | Sequence[float] = (2.0, 3.0),
                       first_scale: Optional[float] = None, image_size: float = 300.0,
                       clip: bool = False,
                       layer_names: Optional[Sequence[str]] = None) -> PriorSpec:
  """A layout from the paper's linear scale rule (Sec. 2.2), for ablations.

  Scales grow linearly from ``s_min`` to ``s_max`` over the layers; with ``first_scale`` (the
  released models' 0.1 for conv4_3) the first layer gets that scale and the rule spans the rest.
  The extra ratio-1 box of layer k uses ``sqrt(s_k s_{k+1})``, with ``s_{m+1}`` extrapolated one
  linear step past ``s_max`` (as Caffe's ``max_sizes`` do). Cell centres are the paper's
  ``(i + 0.5) / |f_k|``.

  Args:
    feature_map_sizes: side of each source feature map.
    s_min, s_max: smallest and largest scale of the linear part, fractions of the image side.
    aspect_ratios: ratios besides 1 (flipped, so ``(2, 3)`` means {2, 1/2, 3, 1/3}), either one
      tuple for every layer or one tuple per layer.
    first_scale: optional scale of the first layer, outside the linear rule.
    image_size: the pixel size the spec is expressed in (does not change the normalized priors).
    clip: clip priors to the image.
    layer_names: optional names of the source layers.
  """
  m = len(feature_map_sizes)
  n_linear = m - 1 if first_scale is not None else m
  if n_linear < 1:
    raise ValueError("from_linear_scales: first_scale needs at least two layers")
  if not 0 < s_min <= s_max:
    raise ValueError(f"from_linear_scales: need 0 < s_min <= s_max, got s_min={s_min}, "
                     f"s_max={s_max}")
  linear = linear_scales(n_linear, s_min, s_max)
  step = linear[1] - linear[0] if n_linear > 1 else s_max - s_min
  scales = ([first_scale] if first_scale is not None else []) + linear
  next_scales = scales[1:] + [linear[-1] + (step if step > 0 else 0.1)]
  # One flat tuple (possibly empty: ratio-1 boxes only) applies to every layer.
  if not aspect_ratios or not isinstance(aspect_ratios[0], (tuple, list)):
    aspect_ratios = [tuple(aspect_ratios)] * m
  return PriorSpec(
      image_size=float(image_size),
      feature_map_sizes=tuple(int(f) for f in feature_map_sizes),
      steps=tuple(image_size / f for f in feature_map_sizes),
      min_sizes=tuple(s * image_size for s in scales),
      max_sizes=tuple(s * image_size for s in next_scales),
      aspect_ratios=tuple(tuple(float(a) for a in r) for r in aspect_ratios),
      clip=clip,
      layer_names=tuple(layer_names) if layer_names is not None else None,
  )


_VGG300_LAYERS = ("conv4_3", "fc7", "conv8_2", "conv9_2", "conv10_2", "conv11_2")
_VGG512_LAYERS = _VGG300_LAYERS + ("conv12_2",)

# Caffe weiliu89/ssd examples/ssd/ssd_pascal.py (VOC, 300x300).
SSD300_VOC = PriorSpec(
    image_size=300, feature_map_sizes=(38, 19, 10, 5, 3, 1), steps=(8, 16, 32, 64, 100, 300),
    min_sizes=(30, 60, 111, 162, 213, 264), max_sizes=(60, 111, 162, 213, 264, 315),
    aspect_ratios=((2,), (2, 3), (2, 3), (2, 3), (2,), (2,)), layer_names=_VGG300_LAYERS)

# Caffe examples/ssd/ssd_coco.py: smaller first scale (0.07) and min_ratio 15.
SSD300_COCO = dataclasses.replace(
    SSD300_VOC, min_sizes=(21, 45, 99, 153, 207, 261), max_sizes=(45, 99, 153, 207, 261, 315))

# Caffe examples/ssd/ssd_pascal_512.py.
SSD512_VOC = PriorSpec(
    image_size=512, feature_map_sizes=(64, 32, 16, 8, 4, 2, 1),
    steps=(8, 16, 32, 64, 128, 256, 512),
    min_sizes=(35.84, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8),
    max_sizes=(76.8, 153.6, 230.4, 307.2, 384.0, 460.8, 537.6),
    aspect_ratios=((2,), (2, 3), (2, 3), (2, 3), (2, 3), (2,), (2,)), layer_names=_VGG512_LAYERS)

PRESETS = {"SSD300_VOC": SSD300_VOC, "SSD300_COCO": SSD300_COCO, "SSD512_VOC": SSD512_VOC}

# Last, so that ``priors.kmeans`` works after ``from ssd_jax import priors``: the submodule builds
# on PriorSpec and generate above.
from ssd_jax.priors import kmeans  # pylint: disable=g-import-not-at-top
