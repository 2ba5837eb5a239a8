"""What ``tests/test_forkserver.py`` runs through ``forkserver.command``: prints how it was started
(as JSON) and ends as told.

  python -m tests.forkserver_probe [--devices] [--exit=N | --raise | --wait]
"""

import json
import os
import sys
import time

import jax

if __name__ == "__main__":
  print(json.dumps({"argv": sys.argv, "cwd": os.getcwd(), "pid": os.getpid(),
                    "preloaded": "ssd_jax.train" in sys.modules,
                    "test": os.environ.get("PYTEST_CURRENT_TEST"),
                    "stdin": sys.stdin.read(),
                    "devices": jax.device_count() if "--devices" in sys.argv else None}),
        flush=True)
  if "--raise" in sys.argv:
    raise RuntimeError("the probe raised")
  if "--wait" in sys.argv:
    time.sleep(600)
  sys.exit(int(next((a.split("=")[1] for a in sys.argv if a.startswith("--exit=")), 0)))
