"""A third training-side toy recognizer: configs/toy_recognizer.py from seed 3 (the judge is
seed 1, ``toy-recognizer`` seed 0, configs/toy_recognizer_b.py seed 2). Not shipped; ~5 min on
the 2-core VM beside a benchmark (stop 52).
    nice -n 19 python -m difai_jax.train --config configs/toy_recognizer_c.py \
        --workdir runs/toy_recognizer_c
    python -m difai_jax.export --workdir runs/toy_recognizer_c --out runs/recognizer_c
No loss reads it. It serves the diagnostic least-edit search of
``benchmarks/toy_inpainting.py`` read by several recognizers as one (``--edit_recognizer
toy-recognizer,runs/recognizer_b,runs/recognizer_c``: their mean probabilities, see
``difai_jax.models.recognizer.Ensemble``). The judge, which scores the result, is never
consulted. Measured (benchmarks/TOY_RESULTS.md, stop 52; with --edit_margin 0.7): thick
strokes 1.72 changes at 1.25x Telea instead of 1.58 at 1.29x; training masks none more.
"""

from configs import toy_recognizer


def get_config():
  config = toy_recognizer.get_config()
  config.seed = 3
  return config
