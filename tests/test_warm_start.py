"""``warm_start.transfer``: another run's weights into a new model, against a loop reference."""

import jax
import numpy as np
import pytest

from ssd_jax import models, train_step, warm_start


def _params(num_classes: int, seed: int, **model_kw):
  """Random values in the shapes of ``ssd_tiny``'s params (traced, not initialized: fast)."""
  model = models.create_model("ssd_tiny", num_classes, **model_kw)
  rng = np.random.default_rng(seed)
  return jax.tree_util.tree_map(lambda s: rng.normal(size=s.shape).astype(np.float32),
                                jax.eval_shape(lambda: train_step.init_params(model, 0)))


def _reference_class_head(init, stored, names, stored_names):
  """Channel by channel with loops: new channel (box b, class j) takes stored (b, j') when
  class j is background (j = j' = 0) or has the same name as stored class j'."""
  out = init.copy()
  new_k, old_k = len(names) + 1, len(stored_names) + 1
  for b in range(init.shape[-1] // new_k):
    for j in range(new_k):
      name = None if j == 0 else names[j - 1]
      for jj in range(old_k):
        if (j == 0 and jj == 0) or (name is not None and jj > 0 and stored_names[jj - 1] == name):
          out[..., b * new_k + j] = stored[..., b * old_k + jj]
  return out


def test_backbone_and_box_heads_are_copied_and_shared_classes_move_by_name():
  names, stored_names = ("boat", "tree", "car"), ("car", "dog", "tree", "cat")
  init, stored = _params(len(names), seed=0), _params(len(stored_names), seed=1)
  out = warm_start.transfer(init, names, stored, stored_names)
  flat = lambda tree: {jax.tree_util.keystr(p): v
                       for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}
  old, new = flat(stored), flat(init)
  for key, leaf in flat(out).items():
    if "_mbox_conf" in key:
      np.testing.assert_array_equal(leaf, _reference_class_head(new[key], old[key], names,
                                                                stored_names), err_msg=key)
    else:
      np.testing.assert_array_equal(leaf, old[key], err_msg=key)
  # Box 0 by hand: background 0 <- 0, boat (new, 1) keeps its init, tree 2 <- 3, car 3 <- 1.
  head, head_old, head_new = (t["['p3_mbox_conf']['kernel']"] for t in (flat(out), old, new))
  for j, jj in ((0, 0), (2, 3), (3, 1)):
    np.testing.assert_array_equal(head[..., j], head_old[..., jj])
  np.testing.assert_array_equal(head[..., 1], head_new[..., 1])


def test_the_same_classes_copy_every_array():
  names = ("a", "b")
  stored = _params(2, seed=1)
  out = warm_start.transfer(_params(2, seed=0), names, stored, names)
  for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(stored)):
    np.testing.assert_array_equal(a, b)


def test_heads_of_other_shapes_are_reinitialized():
  # One box per cell fewer (no aspect ratio 2): the heads cannot carry over, the backbone can.
  from ssd_jax import priors  # pylint: disable=g-import-not-at-top
  spec = priors.from_linear_scales((16, 8, 4, 2, 1), 0.1, 0.9, aspect_ratios=(), image_size=128,
                                   layer_names=("p3", "p4", "p5", "p6", "p7"))
  init = _params(2, seed=0, prior_spec=spec)
  stored = _params(2, seed=1)
  out = warm_start.transfer(init, ("a", "b"), stored, ("a", "b"))
  np.testing.assert_array_equal(out["p3_mbox_conf"]["kernel"], init["p3_mbox_conf"]["kernel"])
  np.testing.assert_array_equal(out["p3_mbox_loc"]["kernel"], init["p3_mbox_loc"]["kernel"])
  np.testing.assert_array_equal(out["backbone"]["stem"]["kernel"],
                                stored["backbone"]["stem"]["kernel"])


def test_another_backbone_is_an_error_naming_the_array():
  stored = _params(2, seed=1)
  stored["backbone"]["stem"]["kernel"] = np.zeros((8, 8, 3, 32), np.float32)
  with pytest.raises(ValueError, match=r"\['backbone'\]\['stem'\]\['kernel'\] is of shape "
                     r"\(8, 8, 3, 32\), this model has \(4, 4, 3, 32\)"):
    warm_start.transfer(_params(2, seed=0), ("a", "b"), stored, ("a", "b"), where="run X")
  del stored["backbone"]["stem"]
  with pytest.raises(ValueError, match="run X: params.*stem.*is missing"):
    warm_start.transfer(_params(2, seed=0), ("a", "b"), stored, ("a", "b"), where="run X")
