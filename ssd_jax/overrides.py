"""Dotted-key overrides of an experiment config: ``{'optimizer.lr': 1e-3, 'priors.s_min': 0.1}``.

What the sweeps (``get_sweep()`` runs, ``experiments/sweep.py --set``) and the tests use to derive
configs from a base one; ``experiments/main.py`` gets the same from ``--config.<key>=<value>``.
"""

import ast
import json
from typing import Any, Mapping

import ml_collections


def parse_value(text: str) -> Any:
  """A Python literal (``3``, ``1e-3``, ``(2.0, 3.0)``, ``None``, ``'p3'``), else the string."""
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def parse_assignment(text: str) -> tuple[str, Any]:
  """``'optimizer.lr=1e-3'`` -> ``('optimizer.lr', 0.001)``."""
  key, sep, value = text.partition("=")
  if not sep or not key.strip():
    raise ValueError(f"override {text!r} is not of the form dotted.key=value")
  return key.strip(), parse_value(value.strip())


def _as_config_value(value: Any) -> Any:
  # A dict becomes a ConfigDict (a ConfigDict field refuses a plain dict); lists become tuples so
  # that a value from the command line matches a tuple field.
  if isinstance(value, Mapping) and not isinstance(value, ml_collections.ConfigDict):
    return ml_collections.ConfigDict({k: _as_config_value(v) for k, v in value.items()})
  if isinstance(value, list):
    return tuple(_as_config_value(v) for v in value)
  return value


def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: Mapping[str, Any]) -> ml_collections.ConfigDict:
  """A copy of ``config`` with ``{dotted.key: value}`` set; ``config`` is left untouched.

  Every key must already exist (a typo would otherwise add a field nobody reads); a dict value
  replaces a whole sub-config (e.g. ``{'priors': {'s_min': 0.2, 's_max': 0.9}}`` where
  ``config.priors`` is None).

  Raises:
    ValueError: naming the key, for an unknown key, a path through a non-ConfigDict field, or a
      value of the wrong type (ConfigDict keeps field types: an int field refuses 1.5).
  """
  config = config.copy_and_resolve_references()
  for key, value in overrides.items():
    *parents, leaf = key.split(".")
    node, path = config, "config"
    for name in parents:
      if name not in node:
        raise ValueError(f"override {key!r}: {path} has no field {name!r}; it has "
                         f"{sorted(node.keys())}")
      node, path = node[name], f"{path}.{name}"
      if not isinstance(node, ml_collections.ConfigDict):
        raise ValueError(f"override {key!r}: {path} is {node!r}, not a ConfigDict; set it as a "
                         f"whole ({path.removeprefix('config.')}={{...}})")
    if leaf not in node:
      raise ValueError(f"override {key!r}: {path} has no field {leaf!r}; it has "
                       f"{sorted(node.keys())}")
    try:
      node[leaf] = _as_config_value(value)
    except TypeError as e:
      raise ValueError(f"override {key!r}: {e}") from e
  return config


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  """Nested dicts -> ``{"dotted.key": leaf}``."""
  if not isinstance(tree, dict):
    return {prefix: tree}
  out = {}
  for k, v in tree.items():
    out.update(flatten(v, f"{prefix}.{k}" if prefix else k))
  return out


def config_differences(a: ml_collections.ConfigDict | dict, b: ml_collections.ConfigDict | dict
                       ) -> list[str]:
  """The dotted keys where two configs (or their JSON dicts) differ, sorted. Values are compared
  as JSON text, so that NaN equals NaN and a tuple its JSON list."""
  as_dict = lambda c: json.loads(c.to_json_best_effort()) if isinstance(
      c, ml_collections.ConfigDict) else c
  flat_a, flat_b = flatten(as_dict(a)), flatten(as_dict(b))
  return sorted(k for k in flat_a.keys() | flat_b.keys()
                if json.dumps(flat_a.get(k)) != json.dumps(flat_b.get(k)))
