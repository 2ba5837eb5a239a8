"""Export of a trained run for serving without this package (the library of
``experiments/export.py``).

  run = experiment.load_trained_run(config, workdir)
  export.export_run(run, "stablehlo", "out/stablehlo")    # jax.export: one serialized file
  export.export_run(run, "savedmodel", "out/savedmodel")  # jax2tf: a TF SavedModel

Both artifacts compute :func:`ssd_jax.inference.predict` (the model, box decoding and per-class
NMS, with the run's ``config.eval`` settings and ``config.matching.variances``) on uint8 images
``[B, S, S, 3]``, RGB, ``S`` the model's input side, for any batch size ``B`` (a symbolic
dimension), and return ``boxes [B, K, 4]`` (normalized xyxy in ``[0, 1]``), ``scores [B, K]``,
``classes [B, K]`` (int32, ``1..C``, 0 = padding; class ``c`` is line ``c`` of
``class_names.txt``) and ``num_detections [B]``, ``K = config.eval.max_detections``, sorted by
decreasing score. The parameters are constants of the program, stored in the artifact.

Each output folder also holds ``class_names.txt`` and ``export.json`` (format, input size,
settings, the source checkpoint). The programs are lowered for each of ``platforms``; with
``conv_impl='auto'`` each platform gets its own convolutions (the Winograd path on CPU, XLA's
elsewhere), as a jit on that platform would.

``'onnx'`` is not offered: jax2onnx requires ``orbax-checkpoint<0.11.37`` (this stack pins
0.12.8), and tf2onnx cannot read the SavedModel, whose program is one ``XlaCallModule`` op (the only
form jax2tf writes); see the README.
"""

import contextlib
import dataclasses
import functools
import json
import os
import tempfile
from typing import Callable, Optional, Sequence

import jax
from jax import lax
from jax._src.export import _export as jax_export_lib  # pylint: disable=g-direct-jax-src-import
from jax.experimental import jax2tf
import jax.numpy as jnp
import tensorflow as tf

from ssd_jax import experiment, inference, overrides
from ssd_jax.data import augment
from ssd_jax.models import conv

FORMATS = ("stablehlo", "savedmodel")
PLATFORMS = ("cpu", "cuda", "tpu")
STABLEHLO_FILE = "model.stablehlo"
CLASS_NAMES_FILE = "class_names.txt"
METADATA_FILE = "export.json"
OUTPUTS = ("boxes", "scores", "classes", "num_detections")


def predict_fn(run: experiment.TrainedRun, platforms: Sequence[str],
               score_threshold: Optional[float] = None,
               decode_per_image: bool = False) -> Callable[[jax.Array], dict]:
  """``images uint8 [B, S, S, 3] -> detections`` (``inference.predict``) on one device, the
  run's parameters as constants, for lowering to ``platforms``: each platform's lowering takes
  the convolutions ``config.model.conv_impl`` stands for there (``conv.resolve_impl``; for
  ``'auto'``, the Winograd ones on CPU and XLA's elsewhere, through ``lax.platform_dependent``)."""
  config, params = run.config, jax.device_get(run.params)
  settings = experiment.decode_settings(config, score_threshold)
  priors = jnp.asarray(run.priors)

  def with_impl(impl: str) -> Callable:
    model = experiment.create_model(overrides.apply_overrides(config, {"model.conv_impl": impl}),
                                    run.label_map.num_classes, run.model.prior_spec)
    return lambda params, images: inference.predict(params, images, model=model, priors=priors,
                                                    settings=settings,
                                                    decode_per_image=decode_per_image)

  impl = config.model.get("conv_impl", "auto")
  per_platform = {p: conv.resolve_impl(impl, p) for p in platforms}
  impls = set(per_platform.values())
  if len(impls) == 1:
    return functools.partial(with_impl(impls.pop()), params)
  # One branch per implementation (lax.platform_dependent joins the platforms of a branch); the
  # parameters are one operand of all of them: the artifact holds them once.
  branches = {i: with_impl(i) for i in impls}
  return lambda images: lax.platform_dependent(
      params, images, **{p: branches[i] for p, i in per_platform.items()})


def stablehlo(run: experiment.TrainedRun, platforms: Sequence[str] = PLATFORMS,
              score_threshold: Optional[float] = None) -> jax.export.Exported:
  """The run's predict function with its parameters as constants, ``images -> detections``,
  exported with a symbolic batch size (``jax.export``)."""
  batch, = jax.export.symbolic_shape("batch")
  size = run.model.image_size
  return jax.export.export(jax.jit(predict_fn(run, platforms, score_threshold)),
                           platforms=platforms)(
      jax.ShapeDtypeStruct((batch, size, size, 3), jnp.uint8))


@contextlib.contextmanager
def _stablehlo_for_tensorflow():
  """Serializes StableHLO for a consumer 12 weeks older than jaxlib (jax.export's choice is 4).

  TensorFlow releases lag JAX's: TF 2.21's ``XlaCallModule`` reads StableHLO up to 1.13.7, the
  12-week version of jaxlib 0.10.2, and fails on the 4-week one (``vhlo.composite_v2``, which
  ``lax.top_k`` lowers to). jax.export has no setting for this, so the version query it makes is
  answered with the 12-week version while jax2tf serializes.
  """
  hlo = jax_export_lib.hlo
  original = hlo.get_version_from_compatibility_requirement
  week_12 = original(hlo.StablehloCompatibilityRequirement.WEEK_12)
  hlo.get_version_from_compatibility_requirement = lambda requirement: week_12
  try:
    yield
  finally:
    hlo.get_version_from_compatibility_requirement = original


class _Serving(tf.Module):
  """The SavedModel's object: the two serving functions and the class names as an asset.

  The parameters are constants of the program, as in the StableHLO artifact, not TF variables:
  ``XlaCallModule`` runs 4-5x faster that way on CPU (``ssd_tiny``, batch 8: 129 against 28
  images/s), for both convolution implementations.
  """

  def __init__(self, run: experiment.TrainedRun, platforms: Sequence[str],
               score_threshold: Optional[float], class_names_path: str):
    super().__init__()
    predict = jax2tf.convert(predict_fn(run, platforms, score_threshold, decode_per_image=True),
                             with_gradient=False,
                             polymorphic_shapes=["(batch, _, _, _)"],
                             native_serialization_platforms=tuple(platforms))
    self.class_names_file = tf.saved_model.Asset(class_names_path)
    size = int(run.model.image_size)

    @tf.function(autograph=False, input_signature=[
        tf.TensorSpec([None, size, size, 3], tf.uint8, name="images")])
    def serve(images):
      detections = predict(images)
      return {k: detections[k] for k in OUTPUTS}

    @tf.function(autograph=False, input_signature=[
        tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    def serve_any_size(images):
      # The evaluation preprocessing: a bilinear warp to the model's square input. Boxes are
      # normalized, so they hold for the original image as well.
      return serve(augment.resize_image(images, size))

    self.serve, self.serve_any_size = serve, serve_any_size


def _write_text(path: str, text: str) -> None:
  with open(path, "w") as f:
    f.write(text)


def export_run(run: experiment.TrainedRun, format: str, output: str,  # pylint: disable=redefined-builtin
               platforms: Sequence[str] = PLATFORMS, score_threshold: Optional[float] = None,
               overwrite: bool = False) -> str:
  """Writes the run as ``format`` (one of :data:`FORMATS`) to the folder ``output``.

  Args:
    run: from :func:`ssd_jax.experiment.load_trained_run`.
    format: ``'stablehlo'``: ``output/model.stablehlo`` (``jax.export.deserialize`` it);
      ``'savedmodel'``: a TF SavedModel with signatures ``serving_default`` (images of the model's
      size) and ``serving_any_size`` (any size, warped to it in the graph).
    output: a folder that does not exist or is empty (unless ``overwrite``).
    platforms: lowering platforms, a subset of :data:`PLATFORMS`.
    score_threshold: minimum class probability of a detection; default
      ``config.eval.score_threshold``.
    overwrite: write into a non-empty ``output``.

  Returns:
    ``output``.

  Raises:
    ValueError: an unknown format or platform, or a non-empty ``output``.
  """
  if format not in FORMATS:
    raise ValueError(f"unknown export format {format!r}; valid: {list(FORMATS)} (ONNX: see the "
                     "README, 'Export and serve')")
  platforms = tuple(platforms)
  unknown = [p for p in platforms if p not in PLATFORMS]
  if unknown or not platforms:
    raise ValueError(f"platforms must be a non-empty subset of {list(PLATFORMS)}, got "
                     f"{list(platforms)}")
  if os.path.isdir(output) and os.listdir(output) and not overwrite:
    raise ValueError(f"export folder {output} is not empty: choose another one, or overwrite")
  os.makedirs(output, exist_ok=True)
  names = "".join(f"{n}\n" for n in run.label_map.class_names)
  if format == "stablehlo":
    exported = stablehlo(run, platforms, score_threshold)
    with open(os.path.join(output, STABLEHLO_FILE), "wb") as f:
      f.write(exported.serialize())
    _write_text(os.path.join(output, CLASS_NAMES_FILE), names)
  else:
    with tempfile.TemporaryDirectory() as tmp, _stablehlo_for_tensorflow():
      _write_text(os.path.join(tmp, CLASS_NAMES_FILE), names)  # Copied into output/assets/.
      module = _Serving(run, platforms, score_threshold, os.path.join(tmp, CLASS_NAMES_FILE))
      tf.saved_model.save(module, output, signatures={
          "serving_default": module.serve, "serving_any_size": module.serve_any_size})
  metadata = {
      "format": format, "platforms": list(platforms), "model": run.config.model.name,
      "image_size": int(run.model.image_size), "input": "uint8 [batch, size, size, 3] RGB",
      "outputs": list(OUTPUTS), "class_names": list(run.label_map.class_names),
      "decode_settings": dataclasses.asdict(experiment.decode_settings(run.config,
                                                                       score_threshold)),
      "checkpoint": run.checkpoint_dir, "step": run.step}
  _write_text(os.path.join(output, METADATA_FILE), json.dumps(metadata, indent=1) + "\n")
  return output


def load_stablehlo(output: str) -> jax.export.Exported:
  """The exported program in ``output`` (call it as ``exported.call(images)``)."""
  with open(os.path.join(output, STABLEHLO_FILE), "rb") as f:
    return jax.export.deserialize(bytearray(f.read()))
