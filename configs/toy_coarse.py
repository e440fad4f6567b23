"""The coarse net alone on the toy faces: the shipped ``toy-difai``'s coarse net (step 1 of
configs/toy_difai.py's recipe), trained in three phases on 2 CPU cores:

    # 1. from random weights, 2,500 steps x 16 images at lr 1e-3 (~90 min at nice 19, sharing
    #    the cores with the test suite)
    python -m difai_jax.train --config configs/toy_coarse.py --workdir runs/toy_coarse_1
    # 2. continued from phase 1 at lr 2e-4 for 3,000 steps (~2 h at nice 19, 0.3-0.65
    #    steps/s beside tests; it ran in two pieces, 593 + 2,407 steps, resumed exactly)
    python -m difai_jax.train --config configs/toy_coarse.py --workdir runs/toy_coarse_2 \
        --config.pretrained.init_from=runs/toy_coarse_1 --config.optim.g_lr=0.0002 \
        --config.train.num_steps.coarse=3000
    # 3. continued from phase 2, again at lr 2e-4 (fresh Adam state), 2,983 steps (stopped
    #    with Ctrl-C; ~1 h 55 min at nice 19 beside another training, 0.35-0.43 steps/s)
    python -m difai_jax.train --config configs/toy_coarse.py --workdir runs/toy_coarse_3 \
        --config.pretrained.init_from=runs/toy_coarse_2 --config.optim.g_lr=0.0002 \
        --config.train.num_steps.coarse=2983
    # 4. paired with the shipped generator (configs/toy_difai.py)
    python -m difai_jax.export --workdir runs/toy_difai/difai --coarse runs/toy_coarse_3 \
        --psp toy-psp --out difai_jax/assets/toy/difai

Widths 16-32-48-64 (configs/demo.py; 0.94 M parameters) with ``floor_stride`` 4: the floors at
16, 8 and 4 px, the sizes MLGN's floors have at 256 px. The MLGN loss is unchanged (SmoothL1 of
the hole x 100 + 5 (1 - MS-SSIM), no critic: blurry on purpose). Held-out hole error
(benchmarks/toy_inpainting.py, 200 test faces, 0-255; training masks / squares / thick strokes;
OpenCV Telea 15.7 / 22.1 / 12.8): 21.0 / 22.6 / 20.1 after phase 1, 18.9 / 20.5 / 18.4 at step
1,250 of phase 2, 15.0 / 17.9 / 14.1 at its step 3,000, 13.9 / 16.6 / 12.9 at step 1,000 of
phase 3 and 12.9 / 15.8 / 12.0 at its end (8,483 steps in all). The previous shipped
coarse net (``floor_stride`` 8: floors at 8, 4, 2 px, 3,750 + 2,183 steps) reached 19.3 / 20.6 /
19.2; the first one (widths 4-8-12-16, 150 steps) learned little more than a flat fill (46.7
against the known pixels' mean colour's 39.6 on the training masks). A phase 4 (stop 42:
init_from toy-difai, lr 2e-4, stopped at step 733) reached 12.65 / 15.81 / 11.90 at step 500,
and completion 00 with it stayed where it was (9.52 / 12.87 / 8.69 against 9.54 / 12.77 /
8.70): not shipped.
"""

from configs import demo


def get_config():
  config = demo.get_config()
  config.stages = ("coarse",)
  config.pretrained.init_from = ""           # from random weights
  config.train.batch_size = 16
  config.train.num_steps = {"coarse": 2500}
  config.train.log_every = 100
  config.train.sample_every = 1000
  config.train.checkpoint_every = 250
  config.train.keep_checkpoints = 3
  return config
