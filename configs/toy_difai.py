"""The shipped toy DiFAI (``toy-difai``): the demo's networks and data, trained longer.

The shipped checkpoint (difai_jax/assets/toy/difai) was made by these commands, on 2 CPU cores:

    # 1. the coarse net alone, from random weights: 3,750 steps x 16 (configs/toy_coarse.py)
    python -m difai_jax.train --config configs/toy_coarse.py --workdir runs/toy_difai/coarse
    # 2. the DiFAI generator on it (this config): 400 steps x 8, ~17 min; the generator
    #    continues the previous toy-difai (git b1b25f0), critic and optimizers fresh
    python -m difai_jax.train --config configs/toy_difai.py --workdir runs/toy_difai/difai
    # 3. inference-only copy (generator + coarse net + config + SeFa cache, 6.3 MB)
    python -m difai_jax.export --workdir runs/toy_difai --out difai_jax/assets/toy/difai

The generator's history before step 2: 600 steps from random weights with SeFa degrees 4-8,
then 400 more with degrees 2-4 (beyond about +-4 the toy StyleGAN2 leaves the face manifold and
the completions copied its colour blobs), both against the first, narrow coarse net (widths
4-8-12-16, 150 steps, a flat fill). Same as configs/demo.py otherwise: 64 px toy faces, the
shipped toy pSp / StyleGAN2 frozen, random VGG-19, adversarial weight 0.05 (the paper's
config: 0.5).
"""

from configs import demo


def get_config():
  config = demo.get_config()
  config.stages = ("difai",)
  config.pretrained.coarse_workdir = "runs/toy_difai/coarse"   # step 1's run
  config.pretrained.init_from = "toy-difai"   # the generator continues (see above)
  config.train.num_steps = {"difai": 400}
  config.train.sample_every = 200
  config.train.checkpoint_every = 100
  config.train.keep_checkpoints = 5
  return config
