"""Starting a run from another run's weights (``config.init_from``), as detection toolboxes'
``load_from`` does: a COCO or VOC run, or the synthetic default, to a user's own data.

:func:`transfer` is pure (params in, params out). What it takes from the other run:
  * every backbone and extra-layer array (``backbone/...`` and anything that is not a head): they
    must exist with the same shapes, i.e. the same ``config.model.name`` (the input size may
    differ: the layers are convolutions);
  * box-regression heads (``*_mbox_loc``) whose shapes agree (same boxes per cell);
  * class heads (``*_mbox_conf``) channel by channel, where the boxes per cell agree: the
    background channel and every class the two label maps share, by name, whatever its index.
    The new run's other classes keep their initialization; with the same classes in the same
    order the head is copied whole.
"""

from typing import Any, Optional, Sequence

from absl import logging
import jax
import numpy as np

_CLASS_HEAD, _BOX_HEAD = "_mbox_conf", "_mbox_loc"


def _class_channels(init: np.ndarray, stored: np.ndarray, class_names: Sequence[str],
                    stored_names: Sequence[str]) -> Optional[np.ndarray]:
  """``init`` (a class head's kernel ``[..., boxes * (C + 1)]`` or bias) with the background and
  the shared classes' channels of ``stored``; None when the boxes per cell differ."""
  new_k, old_k = len(class_names) + 1, len(stored_names) + 1
  boxes = init.shape[-1] // new_k
  if stored.shape[:-1] != init.shape[:-1] or stored.shape[-1] != boxes * old_k:
    return None
  shared = [(j + 1, stored_names.index(n) + 1) for j, n in enumerate(class_names)
            if n in stored_names]
  new_idx, old_idx = (np.array([0] + [a for a, _ in shared]),
                      np.array([0] + [b for _, b in shared]))
  out = np.array(init).reshape(*init.shape[:-1], boxes, new_k)
  out[..., new_idx] = np.asarray(stored).reshape(*stored.shape[:-1], boxes, old_k)[..., old_idx]
  return out.reshape(init.shape)


def transfer(params: Any, class_names: Sequence[str], stored: Any,
             stored_names: Sequence[str], where: str = "the other run") -> Any:
  """``params`` (a freshly initialized model's) with the arrays of ``stored`` (another run's,
  classes ``stored_names``) that carry over (module docstring).

  Args:
    params: the new model's params (NumPy or JAX arrays); ``class_names`` its classes.
    stored: the other run's params; ``stored_names`` its classes (its label map).
    where: names the other run in messages.

  Raises:
    ValueError: a backbone or extra-layer array is missing from ``stored`` or has another shape
      (another model: naming the array and both shapes).
  """
  flat_stored = {jax.tree_util.keystr(k): v for k, v in
                 jax.tree_util.tree_flatten_with_path(stored)[0]}
  stored_names, reinitialized = list(stored_names), []

  def take(path, init):
    name = jax.tree_util.keystr(path)
    old = flat_stored.get(name)
    if _CLASS_HEAD in name:
      if old is None:
        reinitialized.append(name)
        return init
      out = _class_channels(np.asarray(init), np.asarray(old), class_names, stored_names)
      if out is None:
        reinitialized.append(name)
      return init if out is None else out
    if old is not None and tuple(old.shape) == tuple(init.shape):
      return np.asarray(old, dtype=init.dtype)
    if _BOX_HEAD in name:
      reinitialized.append(name)
      return init
    raise ValueError(
        f"{where}: params{name} is {'missing' if old is None else f'of shape {old.shape}'}, "
        f"this model has {tuple(init.shape)}: starting from a run needs the same "
        "config.model.name (the input size may differ)")

  out = jax.tree_util.tree_map_with_path(take, params)
  common = [n for n in class_names if n in stored_names]
  logging.info("Started from %s: backbone and extra layers loaded; %d of %d classes' head "
               "channels carried over (%s)%s.", where, len(common), len(class_names),
               ", ".join(common) or "none",
               f"; re-initialized: {', '.join(reinitialized)}" if reinitialized else "")
  return out
