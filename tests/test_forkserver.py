"""``tests/forkserver.py``: a run through the fork server behaves like ``python -m``, and one whose
environment differs runs in a fresh interpreter."""

import json
import os
import signal
import subprocess
import time

import pytest

from tests import forkserver

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = "tests.forkserver_probe"


@pytest.fixture(autouse=True)
def _enabled(monkeypatch):
  """These tests check the server even in a run with ``SSD_JAX_TEST_FORKSERVER=0``."""
  monkeypatch.delenv("SSD_JAX_TEST_FORKSERVER", raising=False)


def _probe(*args, env=None, cwd=ROOT, stdin=""):
  result = subprocess.run([*forkserver.command(PROBE), *args], cwd=cwd, input=stdin,
                          capture_output=True, text=True, timeout=120, env=env)
  return result, json.loads(result.stdout.splitlines()[0])


def test_a_run_is_forked_from_the_preloaded_server_and_looks_like_python_m():
  result, seen = _probe("--flag", "two words", stdin="piped in")
  assert result.returncode == 0, result.stderr
  assert seen["preloaded"]  # forked: ssd_jax was imported before the probe started
  assert seen["argv"] == [os.path.join(ROOT, "tests", "forkserver_probe.py"), "--flag",
                          "two words"]
  assert seen["cwd"] == ROOT and seen["stdin"] == "piped in"
  assert seen["test"] == os.environ["PYTEST_CURRENT_TEST"]  # this test's, not the first one's


def test_the_child_reads_its_own_xla_flags():
  """XLA parses ``XLA_FLAGS`` when the child sets up its backend, so the flags may differ."""
  flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=3"
  result, seen = _probe("--devices", env={**os.environ, "XLA_FLAGS": flags})
  assert result.returncode == 0 and seen["preloaded"] and seen["devices"] == 3
  assert _probe("--devices")[1]["devices"] == 1


def test_exit_codes_and_exceptions_are_those_of_python_m():
  result, _ = _probe("--exit=3")
  assert result.returncode == 3
  result, _ = _probe("--raise")
  assert result.returncode == 1
  assert "RuntimeError: the probe raised" in result.stderr


def test_another_environment_or_folder_runs_a_fresh_interpreter(tmp_path):
  result, seen = _probe(env={**os.environ, "SSD_JAX_PROBE": "1"})
  assert result.returncode == 0 and not seen["preloaded"]
  # The project is installed (editable), so `python -m tests...` works from any folder.
  result, seen = _probe(cwd=tmp_path)
  assert result.returncode == 0 and not seen["preloaded"]
  assert seen["cwd"] == os.path.realpath(tmp_path)


def _waiting_probe() -> tuple[subprocess.Popen, int]:
  """A probe that waits, and the pid of the forked child that runs it."""
  run = subprocess.Popen([*forkserver.command(PROBE), "--wait"], cwd=ROOT, text=True,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
  return run, json.loads(run.stdout.readline())["pid"]


def test_signals_reach_the_child_and_a_killed_client_takes_its_child_along():
  run, child = _waiting_probe()
  assert child != run.pid
  run.send_signal(signal.SIGTERM)
  assert run.wait(timeout=60) == -signal.SIGTERM

  run, child = _waiting_probe()
  run.kill()
  run.wait(timeout=60)
  deadline = time.monotonic() + 30
  while os.path.exists(f"/proc/{child}") and time.monotonic() < deadline:
    time.sleep(0.05)
  assert not os.path.exists(f"/proc/{child}")
