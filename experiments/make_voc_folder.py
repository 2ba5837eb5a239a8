r"""Writes a stand-in for one's own photos: a VOC folder of cluttered scenes with small objects.

  python -m experiments.make_voc_folder --out /tmp/standin
  python -m experiments.make_voc_folder --out /tmp/standin --num_trainval 300 --num_test 100 \
      --seed 0
  # then train on it like on one's own data:
  python -m experiments.main --config=experiments/configs/custom_voc_dir.py \
      --config.data.root=/tmp/standin --workdir=runs/standin

The folder (``JPEGImages/``, ``Annotations/``, ``ImageSets/Main/{trainval,test}.txt``) is what
``ssd_jax.data.cluttered_voc.write_voc_folder`` writes: 3 classes (``cross, ring, triangle``),
5-30 objects per image, about a third of them under 20 px, on textured backgrounds full of
distractors; see that module for the recipe. The same seed gives the same files. A non-empty
``--out`` is refused unless ``--overwrite`` (which replaces same-named files, keeps the others).
"""

from absl import app, flags

from ssd_jax.data import cluttered_voc

_OUT = flags.DEFINE_string("out", None, "The VOC folder to write (created if missing).")
_NUM_TRAINVAL = flags.DEFINE_integer("num_trainval", 300, "Images in ImageSets/Main/trainval.txt.")
_NUM_TEST = flags.DEFINE_integer("num_test", 100, "Images in ImageSets/Main/test.txt.")
_SEED = flags.DEFINE_integer("seed", 0, "Dataset seed (>= 0): the same seed, the same files.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Write into a non-empty --out.")
flags.mark_flags_as_required(["out"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  try:
    summary = cluttered_voc.write_voc_folder(_OUT.value, _NUM_TRAINVAL.value, _NUM_TEST.value,
                                             _SEED.value, overwrite=_OVERWRITE.value)
  except FileExistsError as e:
    raise app.UsageError(f"{e} (--overwrite)") from e
  per_image = summary["objects_per_image"]
  print(f"Wrote {summary['images']} images ({_NUM_TRAINVAL.value} trainval, {_NUM_TEST.value} "
        f"test) to {_OUT.value}: {summary['objects']} objects ({per_image['min']}-"
        f"{per_image['max']} per image, mean {per_image['mean']:.1f}), "
        f"{summary['fraction_under_20px']:.0%} under 20 px; classes: "
        f"{', '.join(summary['class_names'])}")


if __name__ == "__main__":
  app.run(main)
