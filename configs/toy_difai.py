"""The shipped toy DiFAI (``toy-difai``): the demo's networks and data, trained longer.

    python -m difai_jax.train --config configs/toy_difai.py --workdir runs/toy_difai
    # then copy runs/toy_difai/{coarse,difai} to difai_jax/assets/toy/difai/

Same as configs/demo.py (64 px toy faces, the shipped toy pSp / StyleGAN2 frozen, random VGG-19)
with more DiFAI steps, and one checkpoint kept so the shipped directory stays small.
"""

from configs import demo


def get_config():
  config = demo.get_config()
  config.train.num_steps = {"coarse": 150, "difai": 200}
  config.train.sample_every = 100
  config.train.checkpoint_every = 100
  config.train.keep_checkpoints = 1
  return config
