"""The XLA flags of the test processes. Imports nothing heavy: ``tests/conftest.py`` sets them
before anything imports JAX, and the pytest-xdist controller, which loads that conftest before it
starts the workers, then runs no test and needs neither JAX nor TensorFlow."""

# The tests compile many small programs and run each a few times, where XLA:CPU's compile time
# is most of their run time. Two flags cut it (CPU seconds to compile the tiny config's train
# step: 13.7 at the default level, 7.6 at level 0, 2.6 at level 0 without the MLIR fusion
# emitters; the Winograd path: 19.7 -> 7.2 at level 0), at the cost of slower steps (3 steps of
# the tiny config: 0.16 s at the default level, 0.7 at level 0, 0.9 without the emitters).
# tests/conftest.py sets them for the test processes, and the subprocesses they start inherit
# them (``fixtures.subprocess_env``).
IN_PROCESS_XLA_FLAGS = ("--xla_backend_optimization_level=0",
                        "--xla_cpu_use_fusion_emitters=false")


def with_test_xla_flags(flags: str = "") -> str:
  """``flags`` (an ``XLA_FLAGS`` value) with ``IN_PROCESS_XLA_FLAGS`` added where missing."""
  present = flags.split()
  return " ".join([*present, *(f for f in IN_PROCESS_XLA_FLAGS if f not in present)])
