"""Drawing detections: which boxes a grid cell shows."""

import matplotlib.pyplot as plt
import numpy as np

from ssd_jax import visualize


def _drawn_labels(detections, **kwargs) -> list[str]:
  fig, ax = plt.subplots()
  try:
    visualize._draw_detections_on(ax, detections, ["cat", "dog"], linewidth=1.0, fontsize=6.0,
                                  **kwargs)  # pylint: disable=protected-access
    assert len(ax.patches) == len(ax.texts)  # a box per label
    return [t.get_text() for t in ax.texts]
  finally:
    plt.close(fig)


DETECTIONS = {"boxes": np.tile(np.array([[1.0, 2.0, 10.0, 12.0]], np.float32), (5, 1)),
              "scores": np.array([0.1, 0.9, 0.5, 0.4, 0.8], np.float32),
              "labels": np.array([1, 2, 1, 2, 1])}


def test_threshold_then_the_best_scores_up_to_the_limit():
  assert _drawn_labels(DETECTIONS, score_threshold=0.3) == [
      "dog 0.90", "cat 0.80", "cat 0.50", "dog 0.40"]
  assert _drawn_labels(DETECTIONS, score_threshold=0.3, limit=2) == ["dog 0.90", "cat 0.80"]
  assert _drawn_labels(DETECTIONS, score_threshold=0.95, limit=2) == []


def test_grid_passes_its_limit_per_image(tmp_path, monkeypatch):
  """The evaluator's grid draws the best 20 by default; the augmentation grid passes None."""
  calls = []
  monkeypatch.setattr(visualize, "_draw_detections_on",
                      lambda ax, detections, *args, **kwargs: calls.append(kwargs["limit"]))
  image = np.zeros((16, 16, 3), np.uint8)
  visualize.draw_grid([image], [DETECTIONS], ["cat", "dog"], str(tmp_path / "a.png"))
  visualize.draw_grid([image], [DETECTIONS], ["cat", "dog"], str(tmp_path / "b.png"),
                      max_per_image=None)
  assert calls == [20, None]
