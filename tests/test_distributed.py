"""Multi-process data parallelism of ssd_jax.train: 2 processes read their own shards and stay in
sync. (8 devices in one process giving the 1-device step: tests/test_main.py, through
experiments/main.py.)

The processes are subprocesses of ``tests/distributed_worker.py`` (``jax.distributed`` is set up
when JAX starts), on CPU, started concurrently and killed if a peer fails or the time limit
passes.
"""

import os
import socket
import subprocess
import time

import numpy as np

from ssd_jax import experiment
from ssd_jax.data import pipeline, registry
from tests import distributed_worker
from tests import fixtures
from tests import forkserver
from tests import tiny_train_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 480  # per group of concurrent workers; a worker takes ~20 s of CPU
NUM_STEPS = 3


def _run_workers(tmp_path, runs: dict[str, list[str]]) -> None:
  """Starts ``python -m tests.distributed_worker <args>`` per run, concurrently; waits for all.

  Args:
    tmp_path: where the logs go (``<name>.log``).
    runs: ``{name: worker args}``.

  Raises:
    AssertionError: a worker failed (its peers are killed: they would wait for it forever) or
      the group ran past ``TIMEOUT_S``; the message holds the end of each log.
  """
  # The workers inherit the test processes' XLA flags (fixtures.subprocess_env): compile time
  # is most of a worker's CPU time, and the flags change nothing tested here.
  procs, logs = {}, {}
  env = fixtures.subprocess_env()
  for name, args in runs.items():
    logs[name] = tmp_path / f"{name}.log"
    with open(logs[name], "w") as log:
      procs[name] = subprocess.Popen([*forkserver.command("tests.distributed_worker"), *args],
                                     cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
  deadline = time.monotonic() + TIMEOUT_S
  try:
    while any(p.poll() is None for p in procs.values()):
      failed = [n for n, p in procs.items() if p.poll() not in (None, 0)]
      if failed or time.monotonic() > deadline:
        break
      time.sleep(0.5)
  finally:
    for p in procs.values():
      if p.poll() is None:
        p.kill()
        p.wait()
  codes = {n: p.returncode for n, p in procs.items()}
  if any(codes.values()):
    tails = "\n".join(f"--- {n} (rc {codes[n]}):\n{logs[n].read_text()[-3000:]}" for n in procs)
    raise AssertionError(f"workers failed (or ran past {TIMEOUT_S} s): {codes}\n{tails}")


def _params(npz, prefix: str) -> dict[str, np.ndarray]:
  return {k[len(prefix) + 1:]: npz[k] for k in npz if k.startswith(prefix + "/")}


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_read_their_own_shards_and_stay_in_sync(tmp_path):
  """``train_and_evaluate`` in 2 localhost processes (1 CPU device each, gloo collectives, one
  shared workdir as on a shared filesystem): both restore the same trained checkpoint, and the
  trainer's input function gives them disjoint halves of each global batch, the pipeline's
  shards."""
  coordinator = f"127.0.0.1:{_free_port()}"
  workdir = tmp_path / "shared_workdir"
  runs = {}
  for i in range(2):
    runs[f"process{i}"] = [f"--out={tmp_path}/process{i}.npz", f"--workdir={workdir}",
                           f"--coordinator={coordinator}", "--num_processes=2",
                           f"--process_id={i}", f"--num_steps={NUM_STEPS}"]
  _run_workers(tmp_path, runs)
  out = [np.load(tmp_path / f"process{i}.npz") for i in range(2)]
  for i, o in enumerate(out):
    assert (int(o["process_index"]), int(o["process_count"]), int(o["step"])) == (i, 2, NUM_STEPS)

  params = [_params(o, "params") for o in out]
  assert params[0].keys() == params[1].keys() and len(params[0]) > 10
  for k in params[0]:
    np.testing.assert_array_equal(params[1][k], params[0][k], err_msg=k)
  assert fixtures.largest_change(_params(out[0], "init"), params[0]) > 1e-3
  assert max(int(step) for step in os.listdir(workdir / "checkpoints")) == NUM_STEPS
  saved = fixtures.checkpoint_params(workdir, NUM_STEPS)
  for k in params[0]:
    np.testing.assert_array_equal(saved[k], params[0][k], err_msg=k)

  # Each process fed exactly its shard of the stream: what train_iterator gives for (i, 2).
  config = tiny_train_config.get_config()
  source = registry.make_source(config.data, "train")
  image_size = experiment.image_size(config)
  for i, o in enumerate(out):
    batches = pipeline.train_iterator(source, image_size=image_size,
                                      batch_size=config.batch_size,
                                      max_boxes=config.data.max_boxes, seed=config.seed,
                                      augment=config.augment, process_index=i, process_count=2)
    expected = [distributed_worker.image_hash(image) for _ in range(NUM_STEPS)
                for image in next(batches)["image"]]
    assert list(o["image_hashes"]) == expected, f"process {i}"
  assert not set(out[0]["image_hashes"]) & set(out[1]["image_hashes"])
