"""The predict function: the model's forward and :func:`ssd_jax.postprocess.decode_detections` in
one data-parallel jit, with static shapes.

Evaluation (:mod:`ssd_jax.evaluation`), detection on image files (:mod:`ssd_jax.detect`) and export
run the same function; :func:`ssd_jax.experiment.create_predict_fn` fills its settings in from a
config (``config.eval`` and the ``config.matching.variances`` the targets were encoded with).
"""

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from ssd_jax import models, postprocess

P = jax.sharding.PartitionSpec


@dataclasses.dataclass(frozen=True)
class DecodeSettings:
  """Arguments of :func:`ssd_jax.postprocess.decode_detections` after ``priors``."""
  score_threshold: float = 0.01
  iou_threshold: float = 0.45
  pre_nms_top_k: int = 400
  max_detections: int = 200
  variances: tuple[float, float] = (0.1, 0.2)


def predict(params: Any, images: jax.Array, *, model: models.SSD, priors: jax.Array,
            settings: DecodeSettings, decode_per_image: bool = False) -> dict[str, jax.Array]:
  """``images`` uint8 ``[B, S, S, 3]`` -> detections: normalized xyxy ``boxes [B, K, 4]``,
  ``scores [B, K]``, ``classes [B, K]`` (1..C, 0 = padding) and ``num_detections [B]``,
  ``K = settings.max_detections``.

  ``decode_per_image``: decode in a loop over the images (``lax.map``) instead of vectorized over
  the batch; the same results, with the batch size absent from the decoding's shapes. For a
  symbolic batch size exported to TF's ``XlaCallModule``, which cannot refine a symbolic
  dimension through ``top_k`` (TF 2.21).
  """
  loc, logits = model.apply({"params": params}, images.astype(jnp.float32))
  decode = functools.partial(postprocess.decode_detections, priors=priors,
                             **dataclasses.asdict(settings))
  if not decode_per_image:
    return decode(loc, logits)
  one = lambda loc_logits: jax.tree.map(lambda v: v[0], decode(*(x[None] for x in loc_logits)))
  return jax.lax.map(one, (loc, logits))


def make_predict_fn(model: models.SSD, priors: np.ndarray, settings: DecodeSettings,
                    mesh: jax.sharding.Mesh) -> Callable:
  """``(params, images) -> detections`` (see :func:`predict`), jitted, batch sharded on
  ``'data'``: the batch must be a multiple of the mesh size."""
  fn = functools.partial(predict, model=model, priors=jnp.asarray(priors), settings=settings)
  return jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=(P(), P("data")), out_specs=P("data")))
