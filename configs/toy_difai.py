"""The shipped toy DiFAI (``toy-difai``): the demo's networks and data, trained longer.

The shipped checkpoint (difai_jax/assets/toy/difai) was made by these commands, on 2 CPU cores:

    # 1. the coarse net alone, three phases (configs/toy_coarse.py's docstring)
    python -m difai_jax.train --config configs/toy_coarse.py --workdir runs/toy_coarse_3 ...
    # 2. the pSp, ten phases (configs/toy_psp.py's docstring), exported as toy-psp
    # 3. the DiFAI generator against both: the previous toy-difai's generator (step 3,205,
    #    trained against the pSp of phase 8 on the 285 kimg StyleGAN2) continued against the
    #    890 kimg StyleGAN2 (critic and optimizers fresh) with this file's settings (the toy
    #    recognizer's features for L_per / L_style, half the demo's learning rates): 682 steps
    #    against the pSp of phase 10 at its step 4,759, then resumed (same workdir) against the
    #    final toy-psp (the run's provenance records the switch)
    python -m difai_jax.train --config configs/toy_difai.py --workdir runs/difai_890 \
        --config.pretrained.coarse_workdir=toy-difai --config.pretrained.psp=toy-psp \
        --config.train.num_steps.difai=2084
    # 4. inference-only copy (generator + coarse net + config + SeFa cache, 6.4 MB)
    python -m difai_jax.export --workdir runs/difai_890 --out difai_jax/assets/toy/difai
    # 5. (stop 39) the pSp's phase 11 (two ReStyle passes on phase 10, same decoder) shipped as
    #    toy-psp, and the generator paired with it without training: the copy's meta records
    #    psp_trained_with (phase 10) and its provenance names the new toy-psp; (stop 40) the
    #    same pairing again with phase 11 trained on to 16,945 steps; (stop 41) with phase 12
    #    (a third ReStyle pass); the re-paired copy keeps the generator's files, only its
    #    metadata is rewritten
    python -m difai_jax.export --workdir <the copy of step 4> --out DIR --psp toy-psp
    # 6. (stop 44, the shipped toy-difai) the pSp fitted to DiFAI's use of it, toy-psp-coarse
    #    (configs/toy_psp.py: it reads the coarse completion), and step 4's generator (the
    #    toy-difai of git 46503d9, which init_from named then; critic and optimizers fresh)
    #    trained 700 steps against its style images (1,092 s for 851 steps at nice 19, part of
    #    it beside tests; the run was stopped with Ctrl-C at 851, step 700's checkpoint
    #    exported: the held-out error had stopped falling by step 520); the export names the
    #    shipped copy of the run's local pSp directory (same weights: the record says so)
    python -m difai_jax.train --config configs/toy_difai.py --workdir runs/difai43 \
        --config.pretrained.coarse_workdir=toy-difai --config.pretrained.psp=runs/pspc_export \
        --config.pretrained.init_from=<git 46503d9's difai_jax/assets/toy/difai> \
        --config.train.num_steps.difai=700
    python -m difai_jax.export --workdir runs/difai43 --out difai_jax/assets/toy/difai \
        --psp toy-psp-coarse
    # 7. (stop 47, the shipped toy-difai) against the StyleGAN2 continued to 1,011 kimg: toy-psp
    #    retrained as its phase 13 and toy-psp-coarse continued 1,186 steps against it
    #    (configs/toy_psp.py), then step 6's generator (init_from the toy-difai of git 340bb42;
    #    critic and optimizers fresh) trained 700 steps against the new toy-psp-coarse (2,346 s
    #    at nice 19, beside phase 13 or the evaluations); SeFa's directions are the new decoder's
    python -m difai_jax.train --config configs/toy_difai.py --workdir runs/difai47 \
        --config.pretrained.coarse_workdir=toy-difai --config.pretrained.psp=runs/pspc47_export \
        --config.train.num_steps.difai=700
    python -m difai_jax.export --workdir runs/difai47 --out DIR --psp toy-psp-coarse
    #    (DIR then replaces difai_jax/assets/toy/difai: the export reads the coarse net from the
    #    toy-difai it replaces)
    # 8. (stop 51, the shipped toy-difai) step 7's generator (init_from the toy-difai of git
    #    777e5f2; critic and optimizers fresh) trained 700 steps with region statistics per
    #    image (generator.rn_stats="instance", this file's setting since), 1,212 s at nice 19
    python -m difai_jax.train --config configs/toy_difai.py --workdir runs/difai51 \
        --config.pretrained.coarse_workdir=toy-difai --config.pretrained.psp=toy-psp-coarse \
        --config.generator.rn_stats=instance --config.train.num_steps.difai=700
    python -m difai_jax.export --workdir runs/difai51 --out DIR --psp toy-psp-coarse

Step 8: completion 00's held-out hole error 9.71 / 12.41 / 8.99, one face or many per call
(step 7's: 11.31 / 13.76 / 10.54 one face at a time, 9.34 / 12.18 / 8.60 in batches of 50),
the generator given the ground truth as I_style 3.89 / 3.69 / 3.87 (step 7's alone: 6.0 / 5.8
/ 6.0; README "Honest state"); after 200 steps 10.38 / 14.04 / 9.45 on the first 50 faces
(step 700: 10.27 / 13.87 / 9.35).
Step 7: completion 00's held-out hole error 9.34 / 12.18 / 8.60 after 700 steps (9.40 / 12.19 /
8.69 at 400, 9.35 / 12.18 / 8.60 at 500; step 6's 9.31 / 12.28 / 8.57 on the 890 kimg prior),
the generator given the ground truth as I_style 3.19 / 3.07 / 3.21 (step 6: 3.3 / 3.2 / 3.4).
Step 6 with the generator unchanged (the pSp swapped only): completion 00's held-out hole error
9.45 / 12.42 / 8.70 (training masks / squares / thick strokes; stop 41's pair 9.54 / 12.77 /
8.70); after 520 / 700 steps against it 9.29 / 12.30 / 8.55 and 9.31 / 12.28 / 8.57, and
Tables 1-2's toy FID fell in every bucket (benchmarks/TOY_RESULTS.md).
(``init_from`` below names the shipped toy-difai: a new run continues the generator it ships.
Stop 42 continued it 863 steps against the three-pass toy-psp with step 3's command: at step
800 completion 00's held-out hole error was 9.52 / 12.79 / 8.65 against the shipped 9.54 / 12.77
/ 8.70 (training masks / squares / thick strokes): no gain, not shipped. The generator copies
the style image into the hole (benchmarks/toy_inpainting.py's ``i_style_00`` row: 9.70 / 12.89
/ 8.81), so the inversion of I_coarse, not the generator, sets that error; configs/toy_psp.py's
``psp_train.input="coarse"`` encoder lowers it.)
The generator's history before step 3: 600 steps from random weights with SeFa degrees 4-8,
then 400 more with degrees 2-4 (beyond about +-4 the narrow toy StyleGAN2 left the face
manifold), both against the first, narrow coarse net (widths 4-8-12-16, 150 steps, a flat
fill) and the previous toy-psp (narrow StyleGAN2); 400 against the phase-1 coarse net (git
80293d4); 821 against the floor_stride 8 coarse net and the pSp's phase 1 (shipped at stop 29,
and with the phase-2 coarse net at stop 30); 1,129 against the phase-3 coarse net and the pSp's
phase 5 (shipped at stops 31-32, git e388355); 3,205 against the 285 kimg StyleGAN2 and the
pSp's phases 6-8 (shipped at stops 33-37, git 2c08b8b; with a random VGG-19 at 1/8 width for
L_per / L_style, weights 1 and 120).
Same as configs/demo.py otherwise: 64 px toy faces, adversarial weight 0.05 (the paper's
config: 0.5). L_per and L_style read the toy recognizer's four level maps
(``pretrained.feature_net``; benchmarks/TOY_RESULTS.md, "Loss features": they lower every
held-out error a little against the random VGG-19), weighted 0.12 and 76 to start at the
random VGG's magnitudes under weights 1 and 120. The demo keeps the random VGG-19.
"""

from configs import demo


def get_config():
  config = demo.get_config()
  config.stages = ("difai",)
  config.pretrained.coarse_workdir = "runs/toy_difai/coarse"   # step 1's run
  config.pretrained.init_from = "toy-difai"   # the generator continues (see above)
  config.pretrained.feature_net = "toy-recognizer"   # L_per / L_style features (see above)
  config.loss.lambdas.perceptual = 0.12
  config.loss.lambdas.style = 76.0
  # Region statistics per image, not per batch (the paper's RN-B pools the batch, also at
  # inference): Inpainter / inpaint complete one face per call, and the batch-trained generator
  # drew worse holes alone than in a batch of 50 (stop 51: step 8 above).
  config.generator.rn_stats = "instance"
  config.optim.g_lr = 5e-4                    # half the demo's
  config.optim.d_lr = 5e-4
  config.train.num_steps = {"difai": 1200}
  config.train.sample_every = 200
  config.train.checkpoint_every = 100
  config.train.keep_checkpoints = 5
  return config
