"""The shipped toy DiFAI (``toy-difai``): the demo's networks and data, trained longer.

The shipped checkpoint (difai_jax/assets/toy/difai) was made by these commands, on 2 CPU cores:

    # 1. the coarse net alone, three phases (configs/toy_coarse.py's docstring)
    python -m difai_jax.train --config configs/toy_coarse.py --workdir runs/toy_coarse_3 ...
    # 2. the pSp, five phases (configs/toy_psp.py's docstring), exported as toy-psp
    # 3. the DiFAI generator against both (the coarse net of phase 3's checkpoint 1,750, copied
    #    alone to runs/toy_coarse_3_1750 while phase 3 went on; the pSp of step 2),
    #    continuing the previous toy-difai's generator (critic and optimizers fresh) at half
    #    the demo's learning rates: 1,129 steps x 8 (stopped with Ctrl-C; ~46 min at nice 19
    #    beside the coarse net's phase 3)
    python -m difai_jax.train --config configs/toy_difai.py --workdir runs/toy_difai/difai \
        --config.pretrained.coarse_workdir=runs/toy_coarse_3_1750 \
        --config.pretrained.psp=toy-psp \
        --config.optim.g_lr=0.0005 --config.optim.d_lr=0.0005 \
        --config.train.num_steps.difai=1129
    # 4. inference-only copy (generator + coarse net + config + SeFa cache, 6.4 MB) with the
    #    coarse net at the end of its phase 3, naming the shipped pSp (--psp checks that it
    #    decodes with the StyleGAN2 the run was trained against)
    python -m difai_jax.export --workdir runs/toy_difai/difai --coarse runs/toy_coarse_3 \
        --psp toy-psp --out difai_jax/assets/toy/difai

The generator's history before step 3: 600 steps from random weights with SeFa degrees 4-8,
then 400 more with degrees 2-4 (beyond about +-4 the narrow toy StyleGAN2 left the face
manifold), both against the first, narrow coarse net (widths 4-8-12-16, 150 steps, a flat
fill) and the previous toy-psp (narrow StyleGAN2); 400 against the phase-1 coarse net (git
80293d4); 821 against the floor_stride 8 coarse net and the pSp's phase 1 (shipped at stop 29,
and with the phase-2 coarse net at stop 30).
Same as configs/demo.py otherwise: 64 px toy faces, random VGG-19, adversarial weight 0.05
(the paper's config: 0.5).
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
