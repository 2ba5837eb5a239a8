"""Drawing images with ground-truth and detected boxes (matplotlib, no display needed)."""

from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np


def draw_grid(images: Sequence[np.ndarray], detections: Sequence[dict[str, np.ndarray]],
              class_names: Sequence[str], path: str,
              ground_truth: Optional[Sequence[dict[str, np.ndarray]]] = None,
              score_threshold: float = 0.3, columns: int = 4) -> None:
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
                        fontsize=7)
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
                        score_threshold: float, linewidth: float, fontsize: float) -> None:
  """Boxes (pixels) coloured by class with ``'<name> <score>'`` labels (name alone if score 1)."""
  colors = plt.get_cmap("tab10")
  for b, s, l in zip(detections["boxes"], detections["scores"], detections["labels"]):
    if s < score_threshold:
      continue
    color = colors(int(l) % 10)
    ax.add_patch(plt.Rectangle(b[:2], b[2] - b[0], b[3] - b[1], fill=False, lw=linewidth,
                               ec=color))
    name = class_names[int(l) - 1] if 0 < l <= len(class_names) else str(l)
    ax.text(b[0], b[1], f"{name} {s:.2f}" if s < 1 else name, fontsize=fontsize, color="white",
            va="bottom", bbox=dict(facecolor=color, alpha=0.7, pad=1, lw=0))
