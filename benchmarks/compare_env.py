r"""One benchmark command under several environments (XLA flags, JAX settings), interleaved.

  python -m benchmarks.compare_env [--repeats=3] [--keep_going] [--out=...compare_env.json] \
      --variant='default:' \
      --variant='nhwc:XLA_FLAGS=--xla_gpu_force_conv_nhwc=true' \
      --variant='tf32:JAX_DEFAULT_MATMUL_PRECISION=tensorfloat32' \
      -- python -m benchmarks.bench_model --models=ssd300_vgg16 --batch=64 --functions=forward

Options that a process reads once, when it starts (``XLA_FLAGS``, ``JAX_*`` settings), can only
be compared across processes. Each ``--variant=NAME:VAR=VALUE[;VAR=VALUE...]`` is this
environment with those variables set (``NAME:`` alone: unchanged; ``VAR=`` with nothing after it
unsets ``VAR``). Each repeat runs the command once per variant, the first variant of the order
moving by one every repeat, so that a machine's drift reaches all variants alike; each run gets
``--out=<temporary file>`` appended (the bench scripts' JSON output) and exit status 0 is
required. From each run's JSON every number whose key ends in ``per_s`` (``forward_images_per_s``,
``step_images_per_s``, ...; under ``results`` where there is one) is collected by its dotted
path. Reported per variant and figure: the median [range] over the repeats, and the median
[range] of the per-repeat ratio to the first variant (higher = faster than it where the figure is
a rate). Variables the variants set go into the JSON with the figures.
"""

import json
import os
import subprocess
import tempfile
import time
from typing import Any, Optional

from absl import app, flags

from benchmarks import common

_VARIANTS = flags.DEFINE_multi_string(
    "variant", None, "NAME:VAR=VALUE[;VAR=VALUE...]: an environment to run the command in; the "
    "first is the baseline of the ratios.", required=True)
_REPEATS = flags.DEFINE_integer("repeats", 3, "Runs of the command per variant.", lower_bound=1)
_KEEP_GOING = flags.DEFINE_bool(
    "keep_going", False, "A variant whose run fails (e.g. an XLA flag this version does not "
    "know) is dropped, with its error in the output, instead of ending the comparison.")
_OUT = flags.DEFINE_string("out", "benchmarks/results/compare_env.json", "JSON output.")


def parse_variant(spec: str) -> tuple[str, dict[str, Optional[str]]]:
  """``'name:A=1;B='`` -> ``('name', {'A': '1', 'B': None})`` (``None``: unset the variable)."""
  name, sep, assignments = spec.partition(":")
  if not sep or not name:
    raise app.UsageError(f"--variant needs NAME:VAR=VALUE[;VAR=VALUE...], got {spec!r}")
  changes = {}
  for assignment in filter(None, assignments.split(";")):
    var, eq, value = assignment.partition("=")
    if not eq or not var:
      raise app.UsageError(f"--variant {name!r}: {assignment!r} is not VAR=VALUE")
    changes[var] = value or None
  return name, changes


def rates(payload: Any) -> dict[str, float]:
  """Every number under ``payload['results']`` (or the whole payload) whose key ends in ``per_s``,
  by dotted path, e.g. ``{'0.forward_images_per_s': 217.3}``."""
  found = {}

  def walk(node: Any, path: str) -> None:
    if isinstance(node, dict):
      for key, value in node.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
          if str(key).endswith("per_s"):
            found[f"{path}{key}"] = float(value)
        else:
          walk(value, f"{path}{key}.")
    elif isinstance(node, list):
      for i, value in enumerate(node):
        walk(value, f"{path}{i}.")

  walk(payload.get("results", payload) if isinstance(payload, dict) else payload, "")
  return found


def run_once(command: list[str], changes: dict[str, Optional[str]]) -> dict[str, float]:
  """The command in this environment with ``changes`` and ``--out=<tmp>``; its figures."""
  env = dict(os.environ)
  for var, value in changes.items():
    if value is None:
      env.pop(var, None)
    else:
      env[var] = value
  with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, "out.json")
    result = subprocess.run([*command, f"--out={out}"], env=env, capture_output=True, text=True)
    if result.returncode != 0:
      raise RuntimeError(f"{' '.join(command)} with {changes} exited with {result.returncode}:\n"
                         f"{result.stdout[-2000:]}{result.stderr[-3000:]}")
    with open(out) as f:
      figures = rates(json.load(f))
  if not figures:
    raise RuntimeError(f"{' '.join(command)} wrote no figure whose key ends in 'per_s' to --out")
  return figures


def compare(command: list[str], variants: list[tuple[str, dict[str, Optional[str]]]],
            repeats: int, keep_going: bool = False) -> dict[str, Any]:
  """Runs the command ``repeats`` times per variant, rotating the order; see the module doc.
  With ``keep_going`` a variant other than the first is dropped at its first failed run."""
  names = [name for name, _ in variants]
  if len(set(names)) != len(names):
    raise app.UsageError(f"--variant names must differ, got {names}")
  changes, errors, done = dict(variants), {}, {name: 0 for name in names}

  def run(name: str) -> Optional[dict[str, float]]:
    """The variant's figures, or None once it is dropped."""
    if name in errors:
      return None
    done[name] += 1
    start = time.perf_counter()
    try:
      figures = run_once(command, changes[name])
    except RuntimeError as e:
      if not keep_going or name == names[0]:
        raise
      errors[name] = str(e)
      print(f"repeat {done[name]}/{repeats} {name}: failed, dropped:\n{e}", flush=True)
      return None
    print(f"repeat {done[name]}/{repeats} {name}: {time.perf_counter() - start:.0f} s",
          flush=True)
    return figures

  runs = common.interleave([names], repeats, run)
  base = names[0]
  figures = {}
  for key in runs[base][0]:
    figures[key] = {}
    for name in (n for n in names if n not in errors):
      values = [run[key] for run in runs[name]]
      median, spread = common.median_range(values)
      ratios = [v / b[key] for v, b in zip(values, runs[base])]
      ratio, ratio_range = common.median_range(ratios)
      figures[key][name] = {"median": median, "range": spread, "values": values,
                            "ratio_to_first": ratio, "ratio_range": ratio_range}
  return {"command": command, "repeats": repeats,
          "variants": dict(variants), "figures": figures, "errors": errors}


def main(argv):
  command = argv[1:]
  if command[:1] == ["--"]:
    command = command[1:]
  if not command:
    raise app.UsageError("give the benchmark command after --")
  result = compare(command, [parse_variant(v) for v in _VARIANTS.value], _REPEATS.value,
                   _KEEP_GOING.value)
  width = max(len(name) for name in result["variants"])
  for name, error in result["errors"].items():
    print(f"{name}: dropped, its run failed ({error.splitlines()[0]})")
  for key, by_variant in result["figures"].items():
    print(f"{key}: median [range] over {result['repeats']} repeats; ratio to "
          f"{next(iter(by_variant))}")
    for name, f in by_variant.items():
      print(f"  {name:{width}s} {f['median']:10.2f} [{f['range'][0]:.2f}-{f['range'][1]:.2f}]"
            f"   {f['ratio_to_first']:.3f} [{f['ratio_range'][0]:.3f}-{f['ratio_range'][1]:.3f}]")
  # Only now: machine() starts this process's JAX backend, which on a GPU would have taken the
  # device memory the runs above needed.
  common.write_json(_OUT.value, {"benchmark": "compare_env", **result})


if __name__ == "__main__":
  app.run(main)
