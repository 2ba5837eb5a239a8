"""Dataset sources found by name: ``config.data.source`` picks one, which reads its own fields.

Each source is built for a **role**: ``'train'`` (what the model learns from), ``'val'`` (model
selection: ``checkpoints_best/``; optional) and ``'eval'`` (the reported split, e.g. VOC07 test).
The fields a source reads, ``<role>`` standing for ``train``/``val``/``eval``:

  synthetic      ``data.synthetic`` (kwargs of :func:`ssd_jax.data.synthetic`),
                 ``data.num_<role>_examples`` (``num_val_examples`` 0 = no validation split)
  voc_directory  ``data.root``, ``data.<role>_split`` (``val_split`` empty = none),
                 ``data.<role>_years`` (empty = ``root`` is one VOC folder with ``JPEGImages/``,
                 ``Annotations/`` and ``ImageSets/Main/``), ``data.class_names`` (empty = the
                 names found in the training split's annotations, sorted)
  folder         ``data.root`` (one dataset folder, its layout recognized: VOC, COCO JSON or
                 YOLO, :mod:`ssd_jax.data.folder`), ``data.holdout`` (share held out for a
                 missing test or validation split), ``data.split_seed``, ``data.validation``
                 (whether a validation split is wanted), ``data.class_names`` (VOC: empty = the
                 names found, sorted)
  coco_json      ``data.annotation_file`` + ``data.image_dir`` (train), the ``val_`` and
                 ``eval_`` pairs (``val_annotation_file`` empty = none)
  tfds           ``data.tfds_name`` (or ``data.<role>_tfds_name``), ``data.<role>_split``,
                 ``data.tfds_data_dir``

The training source defines the classes; the other roles get its ``class_names`` and raise a
ValueError naming the file for a class training never saw. A new source is one function here,
registered with :func:`register`.
"""

from typing import Callable, Optional, Sequence

import ml_collections

from ssd_jax.data import coco_json, folder, sources, synthetic, tfds_source, voc_directory

ROLES = ("train", "val", "eval")
# (config.data, role, class names of the training source or None for 'train') -> source or None
SourceFn = Callable[[ml_collections.ConfigDict, str, Optional[Sequence[str]]],
                    Optional[sources.Source]]
SOURCES: dict[str, SourceFn] = {}


def register(name: str) -> Callable[[SourceFn], SourceFn]:
  def add(fn: SourceFn) -> SourceFn:
    SOURCES[name] = fn
    return fn
  return add


def make_source(data: ml_collections.ConfigDict, role: str,
                class_names: Optional[Sequence[str]] = None) -> Optional[sources.Source]:
  """The ``role`` source described by ``config.data``; None for a ``'val'`` role not set.

  Args:
    data: ``config.data``.
    role: one of :data:`ROLES`.
    class_names: the training source's classes (the label map), for ``'val'``/``'eval'``.
  """
  if role not in ROLES:
    raise ValueError(f"role must be one of {ROLES}, got {role!r}")
  if data.source not in SOURCES:
    raise ValueError(f"config.data.source must be one of {sorted(SOURCES)}, "
                     f"got {data.source!r}")
  return SOURCES[data.source](data, role, class_names)


def _required(data: ml_collections.ConfigDict, field: str, hint: str) -> str:
  value = data.get(field)
  if not value:
    raise ValueError(f"config.data.{field} is not set ({data.source}): pass "
                     f"--config.data.{field}={hint}")
  return value


@register("synthetic")
def _synthetic(data, role, class_names):
  num = data.get(f"num_{role}_examples")
  if role == "val" and not num:
    return None
  source = synthetic(split={"eval": "test"}.get(role, role), num_examples=num,
                     **dict(data.synthetic))
  return sources.check_class_names(source, class_names, "config.data.synthetic")


@register("voc_directory")
def _voc_directory(data, role, class_names):
  if role == "val" and not data.get("val_split"):
    return None
  root = _required(data, "root", "/path/to/VOC/folder")
  if class_names is None:
    class_names = tuple(data.get("class_names") or ()) or None  # None = discover
  return voc_directory(root, split=data[f"{role}_split"],
                       years=tuple(data.get(f"{role}_years") or ()), class_names=class_names)


@register("folder")
def _folder(data, role, class_names):
  source = folder.folder_source(_required(data, "root", "/path/to/my_data"), role,
                                class_names=tuple(data.get("class_names") or ()) or None,
                                holdout=data.holdout, seed=data.split_seed,
                                validation=data.validation)
  return source and sources.check_class_names(source, class_names, f"{data.root} ({role})")


@register("coco_json")
def _coco_json(data, role, class_names):
  prefix = {"train": "", "val": "val_", "eval": "eval_"}[role]
  if role == "val" and not data.get("val_annotation_file"):
    return None
  return coco_json(_required(data, f"{prefix}annotation_file", "/path/to/annotations.json"),
                   _required(data, f"{prefix}image_dir", "/path/to/images"),
                   class_names=class_names)


@register("tfds")
def _tfds(data, role, class_names):
  if role == "val" and not data.get("val_split"):
    return None
  name = data.get(f"{role}_tfds_name") or _required(data, "tfds_name", "voc/2007")
  source = tfds_source(name, data[f"{role}_split"], data_dir=data.get("tfds_data_dir"))
  return sources.check_class_names(source, class_names, f"tfds {name}")
