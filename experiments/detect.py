r"""Runs a trained SSD on image files: ``detections.json`` and one annotated PNG per image.

  python -m experiments.detect --config=experiments/configs/synthetic.py \
      --workdir=runs/synthetic --input=photos/ --output=runs/synthetic/detect
  # the best evaluated checkpoint, every candidate evaluation would rank:
  python -m experiments.detect --config=experiments/configs/ssd300_voc0712.py \
      --workdir=runs/ssd300 --best --score_threshold=0.01 --input=img.jpg --output=out/

``--config`` (with its ``--config.*`` overrides) must be the one the run in ``--workdir`` was
trained with: it defines the model, the post-processing (``config.eval``) and the class names
(from ``config.data``; no dataset image is read). ``--input`` is one image file or a folder of
``.jpg``/``.jpeg``/``.png`` images; unreadable files are skipped with a warning. In
``detections.json`` each image has ``file``, ``width``, ``height`` and ``detections``: ``label``
(class name), ``class_id`` (1..C), ``score`` and ``box`` ``[xmin, ymin, xmax, ymax]`` in pixels of
that image; see ``ssd_jax.detect`` for the details.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from ssd_jax import detect

_CONFIG = config_flags.DEFINE_config_file("config", None, "The run's experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "The training run's workdir (checkpoints).")
_INPUT = flags.DEFINE_string("input", None, "An image file or a folder of images.")
_OUTPUT = flags.DEFINE_string("output", None, "Folder for detections.json and the PNGs.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest, or the best "
                             "with --best).")
_BEST = flags.DEFINE_bool("best", False, "Use checkpoints_best/ (best evaluation by "
                          "config.checkpoint.best_metric) instead of checkpoints/.")
_SCORE_THRESHOLD = flags.DEFINE_float(
    "score_threshold", 0.3, "Keep (write and draw) the detections whose class probability is "
    "above this. 0.3 keeps the confident ones; evaluation ranks all candidates above "
    "config.eval.score_threshold (0.01).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", None, "Images per forward pass (default: "
                                   "config.eval.batch_size).")
flags.mark_flags_as_required(["config", "workdir", "input", "output"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  # Orbax logs every step of a restore at INFO.
  logging.get_absl_handler().addFilter(lambda record: "/orbax/" not in record.pathname)
  loaded = detect.load_model_and_params(_CONFIG.value, _WORKDIR.value, step=_STEP.value,
                                        best=_BEST.value)
  results, skipped = detect.detect_images(loaded, detect.list_images(_INPUT.value),
                                          score_threshold=_SCORE_THRESHOLD.value,
                                          batch_size=_BATCH_SIZE.value)
  path = detect.write_outputs(results, _OUTPUT.value, loaded, _SCORE_THRESHOLD.value, skipped)
  found = sum(len(r["detections"]) for r in results)
  print(f"{found} detections in {len(results)} images ({len(skipped)} skipped), step "
        f"{loaded.step} of {loaded.checkpoint_dir}: {path}")


if __name__ == "__main__":
  app.run(main)
