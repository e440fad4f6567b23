"""The coarse net alone on the toy faces, wider and longer than the demo's (the shipped
``toy-difai``'s coarse net comes from this config).

    python -m difai_jax.train --config configs/toy_coarse.py --workdir runs/toy_coarse

The demo's coarse net (widths 4-8-12-16, 150 steps) learned little more than a flat fill: on
held-out faces its hole error was above the known pixels' mean colour (benchmarks/
toy_inpainting.py). This one is 4x wider and trained for thousands of steps, the MLGN loss
unchanged (SmoothL1 of the hole x 100 + 5 (1 - MS-SSIM), no critic: blurry on purpose).
"""

from configs import demo


def get_config():
  config = demo.get_config()
  config.stages = ("coarse",)
  config.pretrained.init_from = ""           # from random weights
  config.coarse.widths = (16, 32, 48, 64)
  config.train.batch_size = 16
  config.train.num_steps = {"coarse": 8000}
  config.train.log_every = 100
  config.train.sample_every = 1000
  config.train.checkpoint_every = 250
  config.train.keep_checkpoints = 3
  return config
