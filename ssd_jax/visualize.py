"""Drawing images with ground-truth and detected boxes (matplotlib, no display needed), and
grids of training augmentations (``experiments/show_augmentations.py``)."""

from typing import Any, Optional, Sequence

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np
import tensorflow as tf

from ssd_jax import photometric
from ssd_jax.data import augment as augment_lib
from ssd_jax.data import sources

# ``{'image': uint8 [H, W, 3], 'boxes': [N, 4] xyxy pixels of that image, 'labels': [N] (1..C)}``
Panel = dict[str, np.ndarray]


def draw_grid(images: Sequence[np.ndarray], detections: Sequence[dict[str, np.ndarray]],
              class_names: Sequence[str], path: str,
              ground_truth: Optional[Sequence[dict[str, np.ndarray]]] = None,
              score_threshold: float = 0.3, columns: int = 4,
              max_per_image: Optional[int] = 20) -> None:
  """Writes a PNG grid of images with labelled boxes.

  Args:
    images: ``[H, W, 3]`` uint8 RGB images.
    detections: per image ``{'boxes': [K, 4] xyxy pixels of that image, 'scores': [K],
      'labels': [K] (1..C)}``; boxes scoring below ``score_threshold`` are not drawn. Use
      ``scores`` of 1 to draw annotations (e.g. augmented training samples).
    class_names: names of labels 1..C.
    path: output PNG.
    ground_truth: optional per image ``{'boxes': [N, 4] pixels, 'labels': [N]}``, drawn dashed.
    score_threshold: minimum score drawn.
    columns: images per row.
    max_per_image: at most this many detections per image are drawn, the highest-scoring (an
      untrained model passes the threshold with hundreds, unreadable in a thumbnail and slow to
      draw); None draws them all.
  """
  n = len(images)
  rows = max(1, -(-n // columns))
  fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3 * rows), squeeze=False)
  for ax in axes.ravel():
    ax.axis("off")
  for i, image in enumerate(images):
    ax = axes.ravel()[i]
    ax.imshow(image)
    for b, l in zip(*(ground_truth[i][k] for k in ("boxes", "labels")) if ground_truth else ()):
      ax.add_patch(plt.Rectangle(b[:2], b[2] - b[0], b[3] - b[1], fill=False, ls="--", lw=1,
                                 ec="white"))
    _draw_detections_on(ax, detections[i], class_names, score_threshold, linewidth=1.5,
                        fontsize=7, limit=max_per_image)
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)


def draw_detections(image: np.ndarray, detections: dict[str, np.ndarray],
                    class_names: Sequence[str], path: str, score_threshold: float = 0.3,
                    dpi: int = 100) -> None:
  """Writes one image at its own resolution (``W x H`` pixels) with labelled detection boxes.

  Args:
    image: ``[H, W, 3]`` uint8 RGB.
    detections: ``{'boxes': [K, 4] xyxy pixels of the image, 'scores': [K], 'labels': [K]
      (1..C)}``; boxes scoring below ``score_threshold`` are not drawn.
    class_names: names of labels 1..C.
    path: output PNG.
    score_threshold: minimum score drawn.
    dpi: only relates the labels' point size to pixels.
  """
  height, width = image.shape[:2]
  fig = plt.figure(figsize=(width / dpi, height / dpi), dpi=dpi)
  ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))  # The image fills the figure: no margins.
  ax.axis("off")
  ax.imshow(image)
  side = min(height, width)  # Labels and lines grow with the image, readable when small.
  _draw_detections_on(ax, detections, class_names, score_threshold,
                      linewidth=max(1.0, side / 300), fontsize=max(6.0, side / 50))
  fig.savefig(path, dpi=dpi)
  plt.close(fig)


def _draw_detections_on(ax, detections: dict[str, np.ndarray], class_names: Sequence[str],
                        score_threshold: float, linewidth: float, fontsize: float,
                        limit: Optional[int] = None) -> None:
  """Boxes (pixels) coloured by class with ``'<name> <score>'`` labels (name alone if score 1):
  those scoring at least ``score_threshold``, the best ``limit`` of them if given."""
  colors = plt.get_cmap("tab10")
  scores = np.asarray(detections["scores"])
  order = [i for i in np.argsort(-scores, kind="stable") if scores[i] >= score_threshold]
  for i in order[:limit]:
    b, s, l = detections["boxes"][i], scores[i], detections["labels"][i]
    color = colors(int(l) % 10)
    ax.add_patch(plt.Rectangle(b[:2], b[2] - b[0], b[3] - b[1], fill=False, lw=linewidth,
                               ec=color))
    name = class_names[int(l) - 1] if 0 < l <= len(class_names) else str(l)
    ax.text(b[0], b[1], f"{name} {s:.2f}" if s < 1 else name, fontsize=fontsize, color="white",
            va="bottom", bbox=dict(facecolor=color, alpha=0.7, pad=1, lw=0))


def _panel(example: dict[str, Any]) -> Panel:
  """An example (normalized boxes) -> a :data:`Panel` (boxes in pixels of its image)."""
  image = np.asarray(example["image"])
  height, width = image.shape[:2]
  boxes = np.asarray(example["boxes"], np.float32).reshape(-1, 4)
  return {"image": image, "boxes": boxes * np.array([width, height, width, height], np.float32),
          "labels": np.asarray(example["labels"], np.int32)}


# One compiled program for every sample (all are image_size): op by op, each sample's distortion
# dispatched ~50 small programs.
_distort = jax.jit(photometric.distort)


def augmentation_panels(source: sources.Source, augment: augment_lib.AugmentConfig,
                        image_size: int, num: int, per_row: int, seed: int = 0) -> list[Panel]:
  """Source examples and their training augmentations, row-major.

  Each row is an unaugmented example at its own size, then outputs of
  ``augment.train_preprocess`` on it at ``image_size`` with the photometric distortion applied:
  what the training pipeline and the train step feed the model (before padding the boxes).

  Args:
    source: a dataset source (``ssd_jax.data``).
    augment: the augmentation knobs.
    image_size: side of the augmented images, pixels.
    num: augmented samples in all; ``ceil(num / per_row)`` source images are used, the last one
      with the remainder.
    per_row: augmented samples per source image.
    seed: shuffles the source (which images) and seeds the augmentations: sample ``k`` (0-based,
      row-major) uses the stateless seed ``(seed, k)``.

  Returns:
    Per row, the original example then its augmentations, each a :data:`Panel`.

  Raises:
    ValueError: for non-positive ``num`` / ``per_row`` / ``image_size``, or a source with fewer
      than ``ceil(num / per_row)`` examples.
  """
  for name, value in (("num", num), ("per_row", per_row), ("image_size", image_size)):
    if value < 1:
      raise ValueError(f"{name} must be >= 1, got {value}")
  rows = -(-num // per_row)
  if source.num_examples < rows:
    raise ValueError(f"the source has {source.num_examples} examples; {num} samples at "
                     f"{per_row} per row need {rows}")
  panels = []
  for row, example in enumerate(source.as_dataset(shuffle=True, seed=seed).take(rows)):
    panels.append(_panel(example))
    for k in range(row * per_row, min(num, (row + 1) * per_row)):
      out = augment_lib.train_preprocess(example, tf.constant([seed, k], tf.int64), image_size,
                                         augment)
      if "photometric" in out:  # What the train step does to the batch.
        distorted = _distort(*(out[k].numpy()[None]
                               for k in ("image", "photometric", "footprint")))
        out = {**out, "image": np.asarray(distorted[0], np.uint8)}
      panels.append(_panel(out))
  return panels


def write_augmentation_grid(source: sources.Source, augment: augment_lib.AugmentConfig,
                            image_size: int, path: str, num: int, per_row: int,
                            seed: int = 0) -> list[Panel]:
  """Draws :func:`augmentation_panels` (same arguments) to the PNG ``path``, one source image
  per row with its boxes and class names; returns the panels drawn."""
  panels = augmentation_panels(source, augment, image_size, num, per_row, seed)
  # Every box is drawn: ground truth has score 1, above any threshold, and no limit applies.
  annotations = [{**p, "scores": np.ones(len(p["labels"]), np.float32)} for p in panels]
  draw_grid([p["image"] for p in panels], annotations, source.class_names, path,
            columns=per_row + 1, max_per_image=None)
  return panels
