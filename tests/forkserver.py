"""Starts the tests' ``python -m <module>`` subprocesses from a pre-imported interpreter.

Each of the suite's ~30 command-line runs (``experiments/main.py`` and the other entry points)
spent ~5 of its ~10 CPU seconds importing TensorFlow, JAX and the rest of ``ssd_jax`` before it
did anything. ``command(module)`` returns an argv for ``subprocess.run``/``Popen`` (in place of
``[sys.executable, "-m", module]``) that runs the module in a fork of a server process which
imported all of that once, like ``multiprocessing``'s forkserver:

- The argv is a small client (``python -m tests.forkserver --socket=S module ...``) that hands
  its stdin/stdout/stderr, environment and working directory to the server, forwards the
  signals it gets to the forked child, and exits as the child did (its exit code, or the same
  signal). Pipes, ``send_signal``, timeouts and return codes behave as with the plain command.
- The child runs the module as ``python -m`` would (``runpy``, ``__main__``, ``sys.argv``) and
  ends through the interpreter's normal exit, so exceptions, ``SystemExit`` codes, ``atexit``
  and thread joins are those of a fresh process.
- The fork is a fresh process's equal only where the two would import the same way, so the
  client runs the plain ``python -m`` instead (``os.execv``) when its environment or working
  directory differs from the server's (environment variables are read at import, e.g. JAX's
  config), or when no server answers. Only variables read later may differ (``_LATE_ENV``):
  ``XLA_FLAGS`` is parsed when the child sets up its JAX backend, so e.g. the device count of
  ``--xla_force_host_platform_device_count`` holds.

The server imports only library code (``ssd_jax`` and ``experiments.cli``), never an entry
point: those define their absl flags when the child runs them. It initializes no JAX backend,
so each child sets up its own devices. ``SSD_JAX_TEST_FORKSERVER=0`` turns all of this off
(every run then starts a fresh interpreter).
"""

import atexit
import importlib
import json
import os
import pkgutil
import runpy
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What may differ from the server's environment: variables nothing reads at import. pytest sets
# the first for each test; XLA parses the second when the child creates its JAX backend; GNU
# readline, once loaded, exports the terminal's size into the C environment, which a plain
# Popen passes on and an ``env=`` built from ``os.environ`` does not.
_LATE_ENV = ("PYTEST_CURRENT_TEST", "XLA_FLAGS", "COLUMNS", "LINES")
_FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1,
                      signal.SIGUSR2)
_server: Optional[subprocess.Popen] = None
_socket_path = ""


def command(module: str) -> list[str]:
  """The argv prefix that runs ``python -m module`` (append the module's arguments), through
  this process's fork server (started on first use) unless ``SSD_JAX_TEST_FORKSERVER=0``."""
  if os.environ.get("SSD_JAX_TEST_FORKSERVER", "1") == "0":
    return [sys.executable, "-m", module]
  global _server, _socket_path
  if _server is None:
    folder = tempfile.mkdtemp(prefix="ssd_jax_forkserver_")
    _socket_path = os.path.join(folder, "socket")
    with open(os.path.join(folder, "server.log"), "w") as log:
      _server = subprocess.Popen([sys.executable, "-m", "tests.forkserver", "--serve",
                                  _socket_path], cwd=ROOT, stdin=subprocess.DEVNULL,
                                 stdout=log, stderr=subprocess.STDOUT)
    atexit.register(_stop, _server, folder)
  return [sys.executable, "-m", "tests.forkserver", f"--socket={_socket_path}", module]


def _stop(server: subprocess.Popen, folder: str) -> None:
  server.terminate()
  server.wait()
  shutil.rmtree(folder, ignore_errors=True)


def _comparable(env: dict[str, str]) -> dict[str, str]:
  return {k: v for k, v in env.items() if k not in _LATE_ENV}


def _preload() -> None:
  """Imports every ``ssd_jax`` module and ``experiments.cli``: what the entry points import."""
  import ssd_jax  # pylint: disable=g-import-not-at-top
  for info in pkgutil.walk_packages(ssd_jax.__path__, "ssd_jax."):
    importlib.import_module(info.name)
  importlib.import_module("experiments.cli")
  from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
  # pylint: disable-next=protected-access
  assert not xla_bridge._backends, "preloading initialized a JAX backend"


def _send(conn: socket.socket, message: dict) -> None:
  conn.sendall(json.dumps(message).encode() + b"\n")


def _serve(path: str) -> Optional[dict]:
  """Forks a child per request until the parent (the test process) is gone. Returns the
  request in each child (to run), never in the server."""
  env, cwd, parent = _comparable(dict(os.environ)), os.getcwd(), os.getppid()
  listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
  listener.bind(path)  # Clients that connect now wait in the backlog until the imports end.
  listener.listen(64)
  _preload()
  children: dict[int, socket.socket] = {}  # pid -> its client's connection
  while os.getppid() == parent:
    ready = select.select([listener, *children.values()], [], [], 0.1)[0]
    for conn in ready:
      if conn is not listener:  # The client is gone (killed on a timeout): so is its child.
        pid = next(p for p, c in children.items() if c is conn)
        os.kill(pid, signal.SIGKILL)
        continue
      conn = listener.accept()[0]
      message, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
      while message and not message.endswith(b"\n"):
        chunk = conn.recv(1 << 16)
        message = message + chunk if chunk else b""
      request = json.loads(message) if message else None  # None: it died while sending.
      if request is None or _comparable(request["env"]) != env or request["cwd"] != cwd:
        if request is not None:
          _send(conn, {"fallback": True})
        conn.close()
        for fd in fds:
          os.close(fd)
        continue
      sys.stdout.flush()
      sys.stderr.flush()
      pid = os.fork()
      if pid == 0:
        for other in (listener, conn, *children.values()):
          other.close()
        for target, fd in enumerate(fds):
          os.dup2(fd, target)
          os.close(fd)
        for key in _LATE_ENV:
          if key in request["env"]:
            os.environ[key] = request["env"][key]
          else:
            os.environ.pop(key, None)
        return request
      for fd in fds:  # Only the child holds them: pipes reach EOF when it and its client end.
        os.close(fd)
      children[pid] = conn
      _send(conn, {"pid": pid})
    while children:
      pid, status = os.waitpid(-1, os.WNOHANG)
      if not pid:
        break
      conn = children.pop(pid)
      try:
        _send(conn, {"status": status})
      except OSError:
        pass  # its client was killed
      conn.close()
  for pid in children:
    os.kill(pid, signal.SIGKILL)
  return None


def _client(path: str, module: str, args: list[str]) -> None:
  """Runs ``module`` in a fork of the server at ``path``, or in a fresh interpreter."""
  plain = [sys.executable, "-m", module, *args]
  conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
  deadline = time.monotonic() + 60
  while True:
    try:
      conn.connect(path)
      break
    except FileNotFoundError:  # The server has not started listening yet.
      if time.monotonic() > deadline:
        os.execv(sys.executable, plain)
      time.sleep(0.02)
    except ConnectionRefusedError:  # It listened, then ended.
      os.execv(sys.executable, plain)
  request = {"module": module, "args": args, "env": dict(os.environ), "cwd": os.getcwd()}
  socket.send_fds(conn, [json.dumps(request).encode() + b"\n"], [0, 1, 2])
  replies = conn.makefile("r")
  reply = json.loads(replies.readline() or '{"fallback": true}')
  if reply.get("fallback"):
    conn.close()
    os.execv(sys.executable, plain)
  pid = reply["pid"]
  for sig in _FORWARDED_SIGNALS:
    signal.signal(sig, lambda signum, frame: os.kill(pid, signum))
  line = replies.readline()
  if not line:
    sys.exit("tests/forkserver.py: the server ended before the child did")
  status = json.loads(line)["status"]
  if os.WIFSIGNALED(status):
    signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
    os.kill(os.getpid(), os.WTERMSIG(status))
  sys.exit(os.waitstatus_to_exitcode(status))


def _run_child(request: dict) -> None:
  """``python -m module args`` in this (forked) process; runpy sets ``sys.argv[0]``."""
  sys.argv = ["-m", *request["args"]]
  runpy.run_module(request["module"], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
  if sys.argv[1] == "--serve":
    child_request = _serve(sys.argv[2])
    if child_request is not None:
      _run_child(child_request)
  else:
    _client(sys.argv[1].removeprefix("--socket="), sys.argv[2], sys.argv[3:])
