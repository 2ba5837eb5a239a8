"""Detection on image files with a trained checkpoint (the library of ``experiments/detect.py``).

  loaded = load_model_and_params(config, workdir)          # latest checkpoint of the run
  results, skipped = detect_images(loaded, list_images("photos/"), score_threshold=0.3)
  write_outputs(results, "out/", loaded, score_threshold=0.3, skipped=skipped)

``config`` is the experiment config the run was trained with: it gives the model, its priors, the
post-processing (``config.eval``: NMS threshold, candidates, detections per image) and, through
the data source, the class names. Images are preprocessed as in evaluation (warped to the model's
square input by bilinear resizing, ``augment.eval_preprocess``); the returned boxes are xyxy in
pixels of the original image (EXIF orientation applied, as image viewers show it). One process;
each batch is split over the local devices.
"""

import dataclasses
import json
import os
from typing import Any, Optional, Sequence

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from PIL import Image
from PIL import ImageOps
import tensorflow as tf

from ssd_jax import inference, models, priors as priors_lib, train, visualize
from ssd_jax.data import VOC_CLASSES
from ssd_jax.data import augment
from ssd_jax.data import config as data_config

P = jax.sharding.PartitionSpec
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


@dataclasses.dataclass(frozen=True)
class LoadedModel:
  """A model with restored parameters, ready for :func:`detect_images`."""
  model: models.SSD
  params: Any  # Replicated over ``mesh``.
  priors: np.ndarray  # [P, 4] normalized cxcywh.
  class_names: tuple[str, ...]  # Names of labels 1..C.
  config: ml_collections.ConfigDict
  mesh: jax.sharding.Mesh
  checkpoint_dir: str
  step: int


def class_names(data: ml_collections.ConfigDict) -> tuple[str, ...]:
  """Names of labels ``1..C`` of the evaluation source described by ``config.data``.

  No image is read; a ``voc_directory`` source is not even opened (its names are in the config),
  so a VOC model runs without the devkit. Other sources read their annotations (``coco_json``) or
  dataset info (``tfds``), as in training.
  """
  if data.source == "voc_directory":
    return tuple(data.get("class_names") or VOC_CLASSES)
  return tuple(data_config.make_source(data, train=False).class_names)


def _abstract_params(model: models.SSD, mesh: jax.sharding.Mesh) -> Any:
  """Shapes, dtypes and (replicated) shardings of the model's params, without computing them."""
  dummy = jnp.zeros((1, model.image_size, model.image_size, 3), jnp.float32)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), dummy)["params"])
  replicated = jax.sharding.NamedSharding(mesh, P())
  return jax.tree_util.tree_map(
      lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated), shapes)


def _check_shapes(expected: Any, stored: Any, where: str, num_classes: int) -> None:
  """Raises a ValueError naming the first parameter whose stored shape is not the model's."""
  flat_stored = {jax.tree_util.keystr(k): v for k, v in
                 jax.tree_util.tree_flatten_with_path(stored)[0]}
  for path, leaf in jax.tree_util.tree_flatten_with_path(expected)[0]:
    name = jax.tree_util.keystr(path)
    shape = tuple(flat_stored[name].shape) if name in flat_stored else None
    if shape != tuple(leaf.shape):
      raise ValueError(
          f"The checkpoint in {where} does not fit the model of this config: params{name} is "
          f"{'missing' if shape is None else f'stored as {shape}'}, the model has "
          f"{tuple(leaf.shape)} ({num_classes} classes from config.data). Pass the config (and "
          "overrides) the run was trained with.")


def load_model_and_params(config: ml_collections.ConfigDict, workdir: str,
                          step: Optional[int] = None, best: bool = False) -> LoadedModel:
  """Builds the config's model and restores its parameters from a training run's workdir.

  Only ``params`` are read (not the optimizer state), read-only, so a run still training in
  ``workdir`` is not disturbed.

  Args:
    config: the experiment config of the run (with the same overrides).
    workdir: the run's ``--workdir``.
    step: the checkpoint step; None = the latest (or, with ``best``, the best).
    best: read ``checkpoints_best/`` (the best evaluation by ``config.checkpoint.best_metric``,
      written in ``train_and_eval`` mode) instead of ``checkpoints/``.

  Raises:
    FileNotFoundError: ``workdir`` or its checkpoint folder is missing or holds no checkpoint.
    ValueError: ``step`` is not saved there, or the checkpoint does not fit the config's model.
  """
  folder = "checkpoints_best" if best else "checkpoints"
  directory = os.path.join(os.path.abspath(workdir), folder)
  if not os.path.isdir(workdir):
    raise FileNotFoundError(f"workdir {workdir} does not exist")
  if not os.path.isdir(directory):
    hint = " (written by evaluations: train with --mode=train_and_eval)" if best else ""
    raise FileNotFoundError(f"workdir {workdir} has no {folder}/ folder{hint}")
  best_fn = lambda metrics: metrics[config.checkpoint.best_metric]
  manager = ocp.CheckpointManager(
      directory, item_handlers=ocp.PyTreeCheckpointHandler(),
      options=ocp.CheckpointManagerOptions(read_only=True, create=False, save_interval_steps=0,
                                           max_to_keep=None, best_fn=best_fn if best else None,
                                           best_mode="max"))
  with manager:
    steps = list(manager.all_steps())
    if not steps:
      raise FileNotFoundError(f"no checkpoint in {directory} (workdir {workdir})")
    if step is None:
      # best_step() is None if no checkpoint recorded metrics: then the latest, as without best.
      step = manager.best_step() if best else None
      step = manager.latest_step() if step is None else step
    elif step not in steps:
      raise ValueError(f"no checkpoint of step {step} in {directory}; saved steps: {sorted(steps)}")
    names = class_names(config.data)
    model = train.create_model(config, num_classes=len(names))
    mesh = jax.make_mesh((jax.device_count(),), ("data",))
    abstract = {"params": _abstract_params(model, mesh)}
    _check_shapes(abstract["params"], manager.item_metadata(step).tree["params"],
                  f"{directory}/{step}", len(names))
    restored = manager.restore(step, args=ocp.args.PyTreeRestore(
        item=abstract, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
        partial_restore=True))
  logging.info("Loaded %s/%d", directory, step)
  return LoadedModel(model=model, params=restored["params"],
                     priors=priors_lib.generate(model.prior_spec), class_names=names,
                     config=config, mesh=mesh, checkpoint_dir=directory, step=int(step))


def list_images(path: str) -> list[str]:
  """``[path]`` for a file (any extension); a folder's ``.jpg``/``.jpeg``/``.png`` files (any
  case, not recursive), sorted by name.

  Raises:
    FileNotFoundError: ``path`` does not exist.
    ValueError: the folder holds no such image.
  """
  if os.path.isfile(path):
    return [path]
  if not os.path.isdir(path):
    raise FileNotFoundError(f"input {path} is neither an image file nor a folder")
  files = sorted(os.path.join(path, name) for name in os.listdir(path)
                 if name.lower().endswith(IMAGE_EXTENSIONS)
                 and os.path.isfile(os.path.join(path, name)))
  if not files:
    raise ValueError(f"input folder {path} holds no {'/'.join(IMAGE_EXTENSIONS)} image")
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


def detect_images(loaded: LoadedModel, paths: Sequence[str], score_threshold: float = 0.3,
                  batch_size: Optional[int] = None) -> tuple[list[dict[str, Any]], list[str]]:
  """Runs the model on image files.

  Args:
    loaded: from :func:`load_model_and_params`.
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
  num_devices = loaded.mesh.devices.size
  batch = min(batch_size or loaded.config.eval.batch_size, len(paths))
  batch = -(-batch // num_devices) * num_devices
  eval_config = ml_collections.ConfigDict(loaded.config.eval.to_dict())
  eval_config.score_threshold = score_threshold
  predict = inference.make_predict_fn(loaded.model, loaded.priors, eval_config, loaded.mesh)
  sharding = jax.sharding.NamedSharding(loaded.mesh, P("data"))
  size = loaded.model.image_size
  results, skipped, pending = [], [], []

  def run_pending():
    inputs = np.zeros((batch, size, size, 3), np.uint8)  # Padding rows' outputs are ignored.
    for i, (_, image) in enumerate(pending):
      inputs[i] = _model_input(image, size)
    out = jax.device_get(predict(loaded.params, jax.device_put(inputs, sharding)))
    for i, (path, image) in enumerate(pending):
      det = {k: v[i] for k, v in out.items()}
      results.append(_to_json(path, *image.shape[:2], det, int(det["num_detections"]),
                              loaded.class_names))
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


def write_outputs(results: Sequence[dict[str, Any]], output_dir: str, loaded: LoadedModel,
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
          loaded.class_names, png, score_threshold=score_threshold)
    images.append({**result, "drawing": name})
  path = os.path.join(output_dir, "detections.json")
  with open(path, "w") as f:
    json.dump({"checkpoint": loaded.checkpoint_dir, "step": loaded.step,
               "score_threshold": score_threshold, "class_names": list(loaded.class_names),
               "images": images, "skipped": list(skipped)}, f, indent=1)
  return path
