"""The coarse net alone on the toy faces: the shipped ``toy-difai``'s coarse net (step 1 of
configs/toy_difai.py's recipe), trained in two phases on 2 CPU cores:

    # 1. from random weights, 3,750 steps x 16 images at lr 1e-3 (~90 min, sharing the cores
    #    with the test suite; 1.2 steps/s alone)
    python -m difai_jax.train --config configs/toy_coarse.py --workdir runs/toy_coarse_1
    # 2. continued from phase 1 (shipped then as toy-difai's coarse net) at lr 2e-4: stopped at
    #    step 2,183 of 3,000 (~72 min, sharing the cores with the pSp and DiFAI trainings)
    python -m difai_jax.train --config configs/toy_coarse.py --workdir runs/toy_difai/coarse \
        --config.pretrained.init_from=toy-difai --config.optim.g_lr=0.0002 \
        --config.train.num_steps.coarse=3000

The first toy coarse net (widths 4-8-12-16, 150 steps) learned little more than a flat fill: on
held-out faces its hole error was above the known pixels' mean colour (benchmarks/
toy_inpainting.py: 46.7 against 39.6 on 0-255). This one is 4x wider (configs/demo.py's
widths 16-32-48-64, 0.94 M parameters), the MLGN loss unchanged (SmoothL1 of the hole x 100 +
5 (1 - MS-SSIM), no critic: blurry on purpose). Held-out hole error (training masks / squares /
thick strokes; OpenCV Telea 15.7 / 22.1 / 12.8): 21.7 / 22.9 / 21.4 after phase 1, 19.7 / 21.0
/ 19.4 at step 1,300 of phase 2 (the lower learning rate helped at once).
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
