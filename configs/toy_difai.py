"""The shipped toy DiFAI (``toy-difai``): the demo's networks and data, trained longer.

The shipped checkpoint (difai_jax/assets/toy/difai) was made by these commands, on 2 CPU cores:

    # 1. the coarse net alone, two phases (configs/toy_coarse.py's docstring)
    python -m difai_jax.train --config configs/toy_coarse.py --workdir runs/toy_difai/coarse ...
    # 2. the DiFAI generator on it, against the shipped toy-psp (pSp on the wide toy StyleGAN2,
    #    configs/toy_psp.py): stopped at step 821 of 1,200 x 8 (~56 min, sharing the cores
    #    with the coarse net's phase 2 and the test suite); the generator continues the
    #    previous toy-difai (git 80293d4), critic and optimizers fresh
    python -m difai_jax.train --config configs/toy_difai.py --workdir runs/toy_difai/difai
    # 3. inference-only copy (generator + coarse net + config + SeFa cache, 6.3 MB) naming
    #    the shipped pSp (--psp checks that it holds the weights the run was trained with)
    python -m difai_jax.export --workdir runs/toy_difai --out difai_jax/assets/toy/difai \
        --psp toy-psp
    # 4. (stop 30) the coarse net replaced by the floor_stride 4 one of configs/toy_coarse.py
    #    (its step 3), the generator unchanged: it was trained against the earlier coarse net

The generator's history before step 2: 600 steps from random weights with SeFa degrees 4-8,
then 400 more with degrees 2-4 (beyond about +-4 the narrow toy StyleGAN2 left the face
manifold), both against the first, narrow coarse net (widths 4-8-12-16, 150 steps, a flat
fill) and the previous toy-psp (narrow StyleGAN2); then 400 against the phase-1 coarse net
(git 80293d4). Same as configs/demo.py otherwise: 64 px toy faces, random VGG-19, adversarial
weight 0.05 (the paper's config: 0.5).
"""

from configs import demo


def get_config():
  config = demo.get_config()
  config.stages = ("difai",)
  config.pretrained.coarse_workdir = "runs/toy_difai/coarse"   # step 1's run
  config.pretrained.init_from = "toy-difai"   # the generator continues (see above)
  config.train.num_steps = {"difai": 1200}
  config.train.sample_every = 200
  config.train.checkpoint_every = 100
  config.train.keep_checkpoints = 5
  return config
