"""A second training-side toy recognizer: configs/toy_recognizer.py from seed 2 (the judge is
seed 1, ``toy-recognizer`` seed 0). Not shipped; 3.7 min on the 2-core VM (stop 45, quiet).

    nice -n 19 python -m difai_jax.train --config configs/toy_recognizer_b.py \
        --workdir runs/toy_recognizer_b
    python -m difai_jax.export --workdir runs/toy_recognizer_b --out runs/recognizer_b
    python -m benchmarks.toy_quality --only_recognizer --recognizer runs/recognizer_b \
        --write_quality      # mean test accuracy 0.888, as toy-recognizer's and the judge's

No loss reads it. It serves only the diagnostic least-edit search of
``benchmarks/toy_inpainting.py`` (``--edit_agree runs/recognizer_b``): a change counts only
where it and ``toy-recognizer`` both read it, so that an edit chosen to fool one network (a few
pixels flipping its reading) is not taken for an attribute change. The judge, which scores the
result, is never consulted. Measured (benchmarks/TOY_RESULTS.md, stop 45): no more changes
confirmed by the judge than with ``toy-recognizer`` alone. Stop 52 reads it with
``toy-recognizer`` and configs/toy_recognizer_c.py as one (``--edit_recognizer``, their mean
probabilities): see that file.
"""

from configs import toy_recognizer


def get_config():
  config = toy_recognizer.get_config()
  config.seed = 2
  return config
