"""The coarse net alone on the toy faces: the shipped ``toy-difai``'s coarse net (step 1 of
configs/toy_difai.py's recipe).

    python -m difai_jax.train --config configs/toy_coarse.py --workdir runs/toy_difai/coarse

The first toy coarse net (widths 4-8-12-16, 150 steps) learned little more than a flat fill: on
held-out faces its hole error was above the known pixels' mean colour (benchmarks/
toy_inpainting.py: 46.7 against 39.6 on 0-255). This one is 4x wider (configs/demo.py's
widths 16-32-48-64, 0.94 M parameters) and trained 3,750 steps x 16 images (~90 min on 2 CPU
cores shared with the test suite; 1.2 steps/s alone), the MLGN loss unchanged (SmoothL1 of the
hole x 100 + 5 (1 - MS-SSIM), no critic: blurry on purpose). Its hole error at step 2,500: 23.0
/ 23.9 / 22.5 (training masks / squares / thick strokes); OpenCV Telea: 15.7 / 22.1 / 12.8.
--config.train.num_steps.coarse=N continues it (the loss was still falling).
"""

from configs import demo


def get_config():
  config = demo.get_config()
  config.stages = ("coarse",)
  config.pretrained.init_from = ""           # from random weights
  config.train.batch_size = 16
  config.train.num_steps = {"coarse": 3750}
  config.train.log_every = 100
  config.train.sample_every = 1000
  config.train.checkpoint_every = 250
  config.train.keep_checkpoints = 3
  return config
