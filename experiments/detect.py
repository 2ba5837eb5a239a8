r"""Runs a trained SSD on image files: ``detections.json`` and one annotated PNG per image.

  python -m experiments.detect --config=experiments/configs/synthetic.py \
      --workdir=runs/synthetic --input=photos/ --output=runs/synthetic/detect
  # the checkpoint best on the validation split, every candidate evaluation would rank:
  python -m experiments.detect --config=experiments/configs/synthetic.py \
      --workdir=runs/synthetic --best --score_threshold=0.01 --input=img.jpg --output=out/

``--config`` (with its ``--config.*`` overrides) must be the one the run in ``--workdir`` was
trained with: it defines the model and the post-processing (``config.eval``); the class names
come from the run's ``label_map.json`` (no dataset is read). ``--input`` is one image file or a
folder of images (``.jpg``, ``.jpeg``, ``.png``, ``.bmp``, ``.gif``, any case); unreadable files
are skipped with a warning. In ``detections.json`` each image has ``file``, ``width``,
``height`` and ``detections``: ``label`` (class name), ``class_id`` (1..C), ``score`` and
``box`` ``[xmin, ymin, xmax, ymax]`` in pixels of that image; see ``ssd_jax.detect`` for the
details.
"""

from absl import app, flags

from experiments import cli
from ssd_jax import detect

_RUN = cli.TrainedRunFlags()
_INPUT = flags.DEFINE_string("input", None, "An image file or a folder of images.")
_OUTPUT = flags.DEFINE_string("output", None, "Folder for detections.json and the PNGs.")
_SCORE_THRESHOLD = flags.DEFINE_float(
    "score_threshold", 0.3, "Keep (write and draw) the detections whose class probability is "
    "above this. 0.3 keeps the confident ones; evaluation ranks all candidates above "
    "config.eval.score_threshold (0.01).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", None, "Images per forward pass (default: "
                                   "config.eval.batch_size).")
flags.mark_flags_as_required(["input", "output"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  run = _RUN.load()
  results, skipped = detect.detect_images(run, detect.list_images(_INPUT.value),
                                          score_threshold=_SCORE_THRESHOLD.value,
                                          batch_size=_BATCH_SIZE.value)
  path = detect.write_outputs(results, _OUTPUT.value, run, _SCORE_THRESHOLD.value, skipped)
  found = sum(len(r["detections"]) for r in results)
  print(f"{found} detections in {len(results)} images ({len(skipped)} skipped), step "
        f"{run.step} of {run.checkpoint_dir}: {path}")


if __name__ == "__main__":
  app.run(main)
