"""The toy judge (``toy-judge``): a second toy-face recognizer, never used by any training loss.

    nice -n 19 python -m difai_jax.train --config configs/toy_judge.py --workdir runs/toy_judge
    python -m difai_jax.export --workdir runs/toy_judge --out difai_jax/assets/toy/judge
    python -m benchmarks.toy_quality --only_recognizer --recognizer difai_jax/assets/toy/judge \
        --write_quality     # its accuracy etc. on 2,000 test faces -> quality.json beside it

The shipped ``toy-recognizer`` feeds the toy pSp's perceptual term (configs/toy_psp.py), so a
measure taken with it would reward what the pSp was trained to match. Every toy-domain measure
(toy FID, attribute frequencies and changes, plausibility: ``difai_jax.evaluation.metrics.toy``)
therefore reads this judge: the same architecture and recipe as configs/toy_recognizer.py from
another seed (its initial weights, batches, flips and shifts), and the pSp stage refuses it as a
perceptual network.
"""

from configs import toy_recognizer


def get_config():
  config = toy_recognizer.get_config()
  config.seed = 1
  return config
