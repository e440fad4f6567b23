"""The shipped toy DiFAI (``toy-difai``): the demo's networks and data, trained longer.

The shipped checkpoint (difai_jax/assets/toy/difai) was made by these commands, on 2 CPU cores:

    # 150 coarse + 600 DiFAI steps with SeFa degrees 4-8 (this config before the change below)
    python -m difai_jax.train --config configs/toy_difai.py --workdir runs/toy_difai \\
        --config.train.num_steps.difai=600 --config.sefa.min_degree=4 --config.sefa.max_degree=8
    # resumed to 1,000 DiFAI steps with SeFa degrees 2-4 (this config)
    python -m difai_jax.train --config configs/toy_difai.py --workdir runs/toy_difai
    # inference-only copy (generator + coarse net + config + SeFa cache, 3 MB)
    python -m difai_jax.export --workdir runs/toy_difai --out difai_jax/assets/toy/difai

Same as configs/demo.py (64 px toy faces, the shipped toy pSp / StyleGAN2 frozen, random VGG-19)
but trained from random weights (the demo starts from this checkpoint), for longer. The SeFa
degrees went from 4-8 to 2-4 at step 600 after looking at the style images: beyond about +-4 the
toy StyleGAN2 leaves the face manifold (colour blobs), and the completions copied those colours.
"""

from configs import demo


def get_config():
  config = demo.get_config()
  config.pretrained.init_from = ""           # from random weights
  config.train.num_steps = {"coarse": 150, "difai": 1000}
  config.train.sample_every = 200
  config.train.checkpoint_every = 100
  config.train.keep_checkpoints = 20
  return config
