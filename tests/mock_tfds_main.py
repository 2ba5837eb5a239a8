"""``experiments/main.py`` with tfds mocked by well-formed fake examples, for the tests of the tfds
configs (``tfds.testing.mock_data`` only patches the process it runs in):

  python -m tests.mock_tfds_main --config=experiments/configs/ssd300_coco.py --workdir=/tmp/w
"""

from absl import app

from experiments import main
from tests import fixtures

if __name__ == "__main__":
  with fixtures.mock_tfds_detection(num_examples=6):
    app.run(main.main)
