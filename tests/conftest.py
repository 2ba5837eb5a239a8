"""Shared test fixtures."""

import numpy as np
import pytest


def random_boxes(rng: np.random.Generator, n: int, degenerate_fraction: float = 0.2,
                 outside: bool = True) -> np.ndarray:
  """``[n, 4]`` xyxy boxes: mostly valid, some zero-area/inverted, some reaching off-image."""
  lo = -0.2 if outside else 0.0
  hi = 1.2 if outside else 1.0
  xy = rng.uniform(lo, hi - 0.05, size=(n, 2))
  wh = rng.uniform(0.01, 0.6, size=(n, 2))
  out = np.concatenate([xy, xy + wh], axis=1)
  bad = rng.random(n) < degenerate_fraction
  kinds = rng.integers(0, 3, size=n)
  out[bad & (kinds == 0), 2] = out[bad & (kinds == 0), 0]  # zero width
  out[bad & (kinds == 1), 3] = out[bad & (kinds == 1), 1] - 0.1  # inverted
  out[bad & (kinds == 2)] = out[bad & (kinds == 2)][:, [0, 1, 0, 1]]  # a point
  return out.astype(np.float32)


@pytest.fixture
def rng() -> np.random.Generator:
  return np.random.default_rng(0)
