"""The toy-face recognizer at 64 px (the shipped `difai_jax/assets/toy/recognizer`).

    nice -n 10 python -m difai_jax.train --config configs/toy_recognizer.py \
        --workdir /work/runs/toy_recognizer
    python -m difai_jax.export --workdir /work/runs/toy_recognizer \
        --out difai_jax/assets/toy/recognizer
    python -m benchmarks.toy_quality      # its accuracy on 2,000 test faces

Not a paper component: a small attribute classifier (`difai_jax/models/recognizer.py`) whose
embedding and predictions give the toy domain its measures
(`difai_jax/evaluation/metrics/toy.py`). Sized to train in under 30 minutes on 2 shared CPU
cores (25 min measured, at nice 10 beside other trainings).

Measured (`quality.json` beside the weights; 2,000 test faces, toy-domain): mean accuracy
0.889; hair style 0.83, hair colour 0.96, skin tone 0.94, beard 0.95, moustache 0.91, glasses
0.96, lipstick 1.00. Mouth (0.57, majority class 0.56) and earrings (0.87, majority 0.88) are
not learned: at 64 px a smile is a ~1 px bend and an earring one pixel, and this network (stride-2
stem) never picks them up within these steps; `metrics.toy.reliable_attributes()` leaves them out.
"""

import ml_collections

from configs import data_defaults
from configs import stage_defaults


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.stages = ("recognizer",)
  config.seed = 0
  # The resolution of the shipped toy StyleGAN2 / pSp / DiFAI: the recognizer sees what they make.
  config.image_size = 64
  config.data = data_defaults.default_data_config()
  config.data.source = "toy"          # the labels come from the renderer
  config.data.verify_files = False
  config.recognizer = stage_defaults.recognizer()
  # 10,000 distinct faces of the 28,000-face train split: rendering (~15 ms a face on a loaded
  # core) would otherwise cost as much as the training; flips and +-4 px shifts add variety.
  config.recognizer.num_train_faces = 10_000
  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 32        # small steps, many of them: ~0.2 s a step on one core
  # ~9 passes over the 10,000 faces; the accuracies level off well before (see the log).
  config.train.num_steps = ml_collections.ConfigDict({"recognizer": 3000})
  config.train.ema_decay = 0.0        # no EMA: the cosine decay to 0 settles the weights
  config.train.log_every = 50
  config.train.sample_every = 0       # no sample grids: a classifier has no images to show
  config.train.checkpoint_every = 500
  config.train.keep_checkpoints = 2
  return config
