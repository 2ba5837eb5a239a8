r"""Exports a trained SSD for serving without this package: StableHLO or a TF SavedModel.

  python -m experiments.export --config=experiments/configs/synthetic.py \
      --workdir=runs/synthetic --format=savedmodel --output=runs/synthetic/savedmodel
  python -m experiments.export --config=experiments/configs/synthetic.py \
      --workdir=runs/synthetic --format=stablehlo --platforms=cpu --output=runs/synthetic/hlo

``--config`` (with its ``--config.*`` overrides) must be the one the run in ``--workdir`` was
trained with: it defines the model, its priors and the post-processing (``config.eval``,
``config.matching.variances``); the class names come from the run's ``label_map.json``. What
each artifact holds and how to load it: ``ssd_jax.export`` and the README ("Export and serve").
"""

from absl import app, flags

from experiments import cli
from ssd_jax import export

_RUN = cli.TrainedRunFlags()
_FORMAT = flags.DEFINE_enum("format", None, export.FORMATS, "What to write.")
_OUTPUT = flags.DEFINE_string("output", None, "Folder to write (absent or empty).")
_PLATFORMS = flags.DEFINE_list("platforms", list(export.PLATFORMS),
                               f"Platforms to lower for, a subset of {list(export.PLATFORMS)}.")
_SCORE_THRESHOLD = flags.DEFINE_float(
    "score_threshold", None, "Minimum class probability of a returned detection (default: "
    "config.eval.score_threshold, 0.01, which returns every candidate evaluation ranks).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Write into a non-empty --output.")
flags.mark_flags_as_required(["format", "output"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  run = _RUN.load()
  path = export.export_run(run, _FORMAT.value, _OUTPUT.value, platforms=_PLATFORMS.value,
                           score_threshold=_SCORE_THRESHOLD.value, overwrite=_OVERWRITE.value)
  print(f"{_FORMAT.value} of step {run.step} of {run.checkpoint_dir} "
        f"({run.label_map.num_classes} classes, {run.model.image_size} px, platforms "
        f"{','.join(_PLATFORMS.value)}): {path}")


if __name__ == "__main__":
  app.run(main)
