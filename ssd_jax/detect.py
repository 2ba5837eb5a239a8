"""Detection on image files with a trained checkpoint (the library of ``experiments/detect.py``).

  run = experiment.load_trained_run(config, workdir)       # latest checkpoint of the run
  results, skipped = detect_images(run, list_images("photos/"), score_threshold=0.3)
  write_outputs(results, "out/", run, score_threshold=0.3, skipped=skipped)

``config`` is the experiment config the run was trained with: it gives the model, its priors and
the post-processing (``config.eval``: NMS threshold, candidates, detections per image; the
``config.matching.variances`` of decoding); the class names come from the run's label map, so no
dataset is read. Images are preprocessed as in evaluation (warped to the model's
square input by bilinear resizing, ``augment.eval_preprocess``); the returned boxes are xyxy in
pixels of the original image (EXIF orientation applied, as image viewers show it). One process;
each batch is split over the local devices.
"""

import json
import os
from typing import Any, Optional, Sequence

from absl import logging
import jax
import numpy as np
from PIL import Image
from PIL import ImageOps
import tensorflow as tf

from ssd_jax import experiment, visualize
from ssd_jax.data import augment, sources

P = jax.sharding.PartitionSpec


def list_images(path: str) -> list[str]:
  """``[path]`` for a file (any extension); a folder's image files (``sources.IMAGE_EXTENSIONS``
  in any case, not recursive), sorted by name.

  Raises:
    FileNotFoundError: ``path`` does not exist.
    ValueError: the folder holds no such image.
  """
  if os.path.isfile(path):
    return [path]
  if not os.path.isdir(path):
    raise FileNotFoundError(f"input {path} is neither an image file nor a folder")
  files = sorted(os.path.join(path, name) for name in os.listdir(path)
                 if name.lower().endswith(sources.IMAGE_EXTENSIONS)
                 and os.path.isfile(os.path.join(path, name)))
  if not files:
    raise ValueError(f"input folder {path} holds no {'/'.join(sources.IMAGE_EXTENSIONS)} image")
  return files


def read_image(path: str) -> Optional[np.ndarray]:
  """The image as uint8 RGB ``[H, W, 3]`` (EXIF orientation applied), or None with a warning
  naming the file if it cannot be decoded."""
  try:
    with Image.open(path) as image:
      return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
  except Exception as e:  # pylint: disable=broad-except  (PIL raises many types on bad files)
    logging.warning("Skipping %s: not a readable image (%s: %s)", path, type(e).__name__, e)
    return None


def _model_input(image: np.ndarray, size: int) -> np.ndarray:
  """``[size, size, 3]`` uint8: the evaluation resize (``augment.resize``, bilinear)."""
  example = {"image": tf.constant(image), "boxes": tf.zeros((0, 4), tf.float32)}
  return augment.resize(example, size)["image"].numpy()


def _to_json(path: str, height: int, width: int, det: dict[str, np.ndarray], num: int,
             names: Sequence[str]) -> dict[str, Any]:
  scale = np.array([width, height, width, height], np.float64)
  boxes = np.clip(det["boxes"][:num] * scale, 0.0, scale)  # Rounding may pass the edge by 1 ulp.
  return {"file": path, "width": width, "height": height, "detections": [
      {"label": names[int(c) - 1], "class_id": int(c), "score": round(float(s), 5),
       "box": [round(float(v), 2) for v in b]}
      for b, s, c in zip(boxes, det["scores"][:num], det["classes"][:num])]}


def detect_images(run: experiment.TrainedRun, paths: Sequence[str], score_threshold: float = 0.3,
                  batch_size: Optional[int] = None) -> tuple[list[dict[str, Any]], list[str]]:
  """Runs the model on image files.

  Args:
    run: from :func:`ssd_jax.experiment.load_trained_run`.
    paths: image files (see :func:`list_images`); unreadable ones are skipped with a warning.
    score_threshold: detections whose class probability is above it are kept (at most
      ``config.eval.max_detections`` per image, after per-class NMS at
      ``config.eval.nms_iou_threshold``). Evaluation uses ``config.eval.score_threshold`` (0.01)
      to rank every candidate; 0.3 keeps the confident ones.
    batch_size: images per forward pass; default ``config.eval.batch_size``, at most the number
      of images, rounded up to a multiple of the local device count.

  Returns:
    ``(results, skipped)``: per readable image in input order, ``{'file', 'width', 'height',
    'detections': [{'label': class name, 'class_id': 1..C, 'score', 'box': [xmin, ymin, xmax,
    ymax] in pixels of the image}, ...]}`` (detections by decreasing score); and the files that
    could not be read.

  Raises:
    ValueError: no path, a threshold outside ``[0, 1)``, or no readable image.
  """
  if not paths:
    raise ValueError("no image to run on")
  if not 0.0 <= score_threshold < 1.0:
    raise ValueError(f"score_threshold must be in [0, 1), got {score_threshold}")
  batch = experiment.round_to_devices(
      min(batch_size or run.config.eval.batch_size, len(paths)), run.mesh)
  predict = experiment.create_predict_fn(run.config, run.model, run.mesh, score_threshold)
  sharding = jax.sharding.NamedSharding(run.mesh, P("data"))
  size = run.model.image_size
  results, skipped, pending = [], [], []

  def run_pending():
    inputs = np.zeros((batch, size, size, 3), np.uint8)  # Padding rows' outputs are ignored.
    for i, (_, image) in enumerate(pending):
      inputs[i] = _model_input(image, size)
    out = jax.device_get(predict(run.params, jax.device_put(inputs, sharding)))
    for i, (path, image) in enumerate(pending):
      det = {k: v[i] for k, v in out.items()}
      results.append(_to_json(path, *image.shape[:2], det, int(det["num_detections"]),
                              run.label_map.class_names))
    pending.clear()

  for path in paths:
    image = read_image(path)
    if image is None:
      skipped.append(path)
      continue
    pending.append((path, image))
    if len(pending) == batch:
      run_pending()
  if pending:
    run_pending()
  if not results:
    raise ValueError(f"none of the {len(paths)} input files is a readable image: {skipped[:5]}")
  return results, skipped


def _drawing_names(results: Sequence[dict[str, Any]]) -> list[str]:
  """``<stem>.png`` per image; ``<stem>_<ext>.png`` where stems repeat (``a.jpg``, ``a.png``)."""
  stems = [os.path.splitext(os.path.basename(r["file"])) for r in results]
  counts: dict[str, int] = {}
  for stem, _ in stems:
    counts[stem] = counts.get(stem, 0) + 1
  return [f"{stem}.png" if counts[stem] == 1 else f"{stem}_{ext.lstrip('.')}.png"
          for stem, ext in stems]


def write_outputs(results: Sequence[dict[str, Any]], output_dir: str, run: experiment.TrainedRun,
                  score_threshold: float, skipped: Sequence[str] = ()) -> str:
  """Writes ``detections.json`` and one PNG per image (its detections drawn) to ``output_dir``.

  ``detections.json``: ``{'checkpoint': dir, 'step', 'score_threshold', 'class_names',
  'images': results with 'drawing' (the PNG's name) added, 'skipped': files}``.

  Returns:
    The path of ``detections.json``.

  Raises:
    ValueError: a drawing would overwrite its input image (output folder = input folder).
  """
  os.makedirs(output_dir, exist_ok=True)
  images = []
  for result, name in zip(results, _drawing_names(results)):
    png = os.path.join(output_dir, name)
    if os.path.realpath(png) == os.path.realpath(result["file"]):
      raise ValueError(f"drawing {png} would overwrite the input image: choose another --output")
    image = read_image(result["file"])
    if image is not None:  # Unless it changed since detect_images (warned).
      det = result["detections"]
      visualize.draw_detections(
          image, {"boxes": np.array([d["box"] for d in det]).reshape(-1, 4),
                  "scores": np.array([d["score"] for d in det]),
                  "labels": np.array([d["class_id"] for d in det])},
          run.label_map.class_names, png, score_threshold=score_threshold)
    images.append({**result, "drawing": name})
  path = os.path.join(output_dir, "detections.json")
  with open(path, "w") as f:
    json.dump({"checkpoint": run.checkpoint_dir, "step": run.step,
               "score_threshold": score_threshold,
               "class_names": list(run.label_map.class_names),
               "images": images, "skipped": list(skipped)}, f, indent=1)
  return path
