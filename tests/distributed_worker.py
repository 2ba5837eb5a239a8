"""Subprocess side of ``tests/test_distributed.py``: one process of a multi-process
``train_and_evaluate`` run on localhost (CPU, gloo) on the tiny config; dumps params to .npz.

  python -m tests.distributed_worker --out=/tmp/p0.npz --workdir=/tmp/shared \\
      --coordinator=127.0.0.1:12345 --num_processes=2 --process_id=0

The .npz holds the parameters before the first and after the last step under ``init/<path>`` and
``params/<path>`` (``<path>`` the ``/``-joined tree path, e.g. ``backbone/stem/kernel``), each
this process's own copy, then ``image_hashes`` (one int per example of this process's batches,
in order), ``step``, ``process_index`` and ``process_count``.
"""

import argparse
import hashlib
import sys

import jax
import numpy as np

from ssd_jax import experiment, train
from tests import fixtures, tiny_train_config


def image_hash(image: np.ndarray) -> int:
  """A 56-bit content hash of one example's pixels (fits int64)."""
  return int.from_bytes(hashlib.sha1(image.tobytes()).digest()[:7], "big")


def run_multihost(workdir: str, coordinator: str, num_processes: int, process_id: int,
                  num_steps: int) -> dict[str, np.ndarray]:
  """One process of ``train.train_and_evaluate(mode='train')`` with ``config.distributed`` set,
  then its own copy of the initial and the checkpointed params, and hashes of the examples the
  trainer's input function gives this process for those steps."""
  config = tiny_train_config.get_config()
  config.num_train_steps = num_steps
  config.distributed.initialize = True
  config.distributed.coordinator_address = coordinator
  config.distributed.num_processes = num_processes
  config.distributed.process_id = process_id
  train.train_and_evaluate(config, workdir, mode="train")
  run = experiment.load_trained_run(config, workdir)
  training = experiment.create_training(config, run.mesh)
  init = training.initial_state(config, run.mesh).params
  batches = experiment.train_batches(config, training.data.train)
  hashes = [image_hash(image) for _ in range(num_steps) for image in next(batches)["image"]]
  return {**fixtures.flat_params(init, "init/"), **fixtures.flat_params(run.params, "params/"),
          "image_hashes": np.array(hashes, np.int64), "step": np.array(run.step),
          "process_index": np.array(jax.process_index()),
          "process_count": np.array(jax.process_count())}


def main(argv: list[str]) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True, help=".npz written at the end")
  parser.add_argument("--num_steps", type=int, default=3)
  parser.add_argument("--workdir", required=True, help="the same folder for all processes")
  parser.add_argument("--coordinator", required=True, help="host:port of process 0")
  parser.add_argument("--num_processes", type=int, default=2)
  parser.add_argument("--process_id", type=int, default=0)
  args = parser.parse_args(argv)
  jax.config.update("jax_platforms", "cpu")  # gloo collectives; no accelerator is probed
  np.savez(args.out, **run_multihost(args.workdir, args.coordinator, args.num_processes,
                                     args.process_id, args.num_steps))


if __name__ == "__main__":
  main(sys.argv[1:])
