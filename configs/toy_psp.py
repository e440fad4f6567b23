"""pSp on the procedural toy faces at 64 px against the frozen wide toy StyleGAN2 (the shipped
`toy-psp`).

    python -m difai_jax.train --config configs/toy_psp.py --workdir runs/toy_psp
    python -m difai_jax.export --workdir runs/toy_psp --out difai_jax/assets/toy/psp
    python -m benchmarks.toy_quality --only_psp   # its reconstruction L2 / PSNR on 256 test faces

The shipped one, against `toy-stylegan2-wide` as shipped at 1,011 kimg (stop 46; the pSp
export carries its own copy of that decoder), in thirteen phases of batch 8 on 2 CPU cores,
each continuing the previous one's encoder
(``--config.pretrained.init_from=<previous>``; Adam's learning rate is constant, so a
phase stopped with Ctrl-C equals one run with ``num_steps`` set where it stopped; a phase
resumed in its own workdir with another ``psp_train.lr`` keeps its Adam state). Phases 1-5
trained against the same generator at 121 kimg, 6-8 at 285 kimg, 9 at 794 kimg, 10-12 at 890,
13 at 1,011:

    # phase  steps   overrides                                    PSNR after (256 test faces)
    # 1      4,000   (this file: random weights, lr 5e-4)         20.6 dB
    # 2      4,000   init_from phase 1                            21.25 dB
    # 3      3,917   init_from phase 2                            21.6 dB (step 3,750)
    # 4      5,650   psp_train.lambda_wnorm=0.001 psp_train.lr=2e-4   22.5 dB (step 5,500)
    # 5      4,300   psp_train.lambda_wnorm=0.001 psp_train.lr=5e-5   22.7 dB
    # -- the generator continued from 121 to 285 kimg --
    # 6      7,582   as phase 4 (lr 2e-4), init_from phase 5      23.1 dB
    # 7      9,034   as phase 4, init_from phase 6                23.4 dB (step 7,000)
    # 8      4,713   as phase 5 (lr 5e-5), init_from phase 7      23.74 dB (shipped until stop 38)
    # -- the generator continued to 794 kimg --
    # 9      3,891   as phase 4, init_from phase 8                23.71 dB (22.4 at its start)
    # -- the generator continued to 890 kimg (feature critic) --
    # 10     10,135  as phase 4, init_from phase 9: 4,759 steps,  24.02 dB at step 4,759,
    #                then resumed at lr 5e-5 to step 10,135        24.35 dB
    python -m difai_jax.train --config configs/toy_psp.py --workdir runs/toy_psp_10 \
        --config.pretrained.init_from=runs/toy_psp_9 --config.train.num_steps.psp=4759 \
        --config.psp_train.lambda_wnorm=0.001 --config.psp_train.lr=0.0002
    python -m difai_jax.train --config configs/toy_psp.py --workdir runs/toy_psp_10 \
        --config.pretrained.init_from=runs/toy_psp_9 --config.train.num_steps.psp=10135 \
        --config.psp_train.lambda_wnorm=0.001 --config.psp_train.lr=0.00005
    # -- phase 11 adds ReStyle passes (psp.restyle_iterations=2; see below), same generator --
    # 11     16,945  init_from phase 10, restyle_iterations=2;    25.84 dB (after each pass:
    #                encoder lr 5e-5, restyle_lr 5e-4 to step 721,  24.60 / 25.56 / 25.84)
    #                resumed at restyle_lr 1e-3 to step 15,094     25.25 at step 7,327
    #                (25.47 at 11,000, 25.67 at 15,000), then both (shipped at stop 39),
    #                rates / 4 (lr 1.25e-5, restyle_lr 2.5e-4)
    python -m difai_jax.train --config configs/toy_psp.py --workdir runs/toy_psp_11 \
        --config.pretrained.init_from=runs/toy_psp_10 --config.psp.restyle_iterations=2 \
        --config.psp_train.lambda_wnorm=0.001 --config.psp_train.lr=0.00005 \
        --config.psp_train.restyle_lr=0.0005 --config.train.num_steps.psp=721
    # then the same command with --config.psp_train.restyle_lr=0.001
    #   --config.train.num_steps.psp=15094 (it resumes runs/toy_psp_11), then with
    #   --config.psp_train.lr=0.0000125 --config.psp_train.restyle_lr=0.00025
    #   --config.train.num_steps.psp=16945: ~2.5 h in all, 1.5-2.6 steps/s. The lower rates
    #   gave +0.10 dB in their first 400 steps (25.77 at 15,500), then +0.07 in 1,450 more.
    # -- phase 12 adds a third ReStyle pass (restyle_iterations=3), same encoders, generator --
    # 12     4,000   init_from phase 11 (stop 40's toy-psp),      26.03 dB (after each pass:
    #                restyle_iterations=3; phase 11's last rates  24.60 / 25.59 / 25.94 /
    #                to step 2,158, then both / 4 (lr 3.125e-6,   26.03); 25.96 at 1,000 and
    #                restyle_lr 6.25e-5)                          2,000, 26.01 at 3,000
    python -m difai_jax.train --config configs/toy_psp.py --workdir runs/toy_psp_12 \
        --config.pretrained.init_from=runs/toy_psp_11 --config.psp.restyle_iterations=3 \
        --config.psp_train.lambda_wnorm=0.001 --config.psp_train.lr=0.0000125 \
        --config.psp_train.restyle_lr=0.00025 --config.train.num_steps.psp=2158
    # then the same command with --config.psp_train.lr=0.000003125
    #   --config.psp_train.restyle_lr=0.0000625 --config.train.num_steps.psp=4000 (it resumes
    #   runs/toy_psp_12): 43 min at 1.2-1.6 steps/s (stop 41; 26.03 at 5,029 too, not better).
    #   The third pass was worth training: phase 11's encoders run three times untrained give
    #   25.83 (the third pass undoes a little); trained, it adds +0.10 dB within 1,000 steps.
    # -- the generator continued to 1,011 kimg (stop 46: the attribute term, no mixing) --
    # 13     2,500   init_from phase 12 (toy-psp of stop 41),     26.03 dB (shipped, stop 47;
    #                against this file's generator: lr 5e-5,     24.59 / 25.58 / 25.94 /
    #                restyle_lr 5e-4 to step 1,168, then both /4  26.03; 25.89 at 250,
    #                to 2,082, then both /4 again to 2,500        25.96 at 1,000, 26.01 at 1,500
    #                                                             and 2,000; 26.03 at 2,500)
    python -m difai_jax.train --config configs/toy_psp.py --workdir runs/psp47 \
        --config.pretrained.init_from=toy-psp --config.psp.restyle_iterations=3 \
        --config.psp_train.lambda_wnorm=0.001 --config.psp_train.lr=0.00005 \
        --config.psp_train.restyle_lr=0.0005 --config.train.num_steps.psp=1168
    # then the same command with --config.psp_train.lr=0.0000125
    #   --config.psp_train.restyle_lr=0.000125 --config.train.num_steps.psp=2082, then with
    #   --config.psp_train.lr=0.000003125 --config.psp_train.restyle_lr=0.00003125
    #   --config.train.num_steps.psp=2500 (each resumes runs/psp47; the first two parts were
    #   stopped with Ctrl-C at those steps): 54 min at nice 19, 0.8-0.9 steps/s beside the
    #   coarse-input pSp below or DiFAI.

ReStyle passes (Alaluf et al. 2021, "ReStyle: A Residual-Based StyleGAN Encoder via Iterative
Refinement"; an extension: pSp and DiFAI encode in one pass). Phase 10's encoder stopped 7 dB
below what Adam on W+ reaches from its codes (24.1 -> 31.6 dB on 64 faces), and only 10 such
Adam steps give +1.7 dB: the single forward pass, not the generator, is the limit. A second
encoder of the same architecture reads the face and the current reconstruction (6 channels) and
adds a residual to the codes; two passes (three since phase 12) follow the encoder's. It starts
as a copy of the trained encoder that sees (face - reconstruction) and whose style heads are
zero, so the first step reconstructs exactly as phase 10; the encoder keeps training at 5e-5,
the new one at its own rate (``psp_train.restyle_lr``). Every caller of ``encode`` (DiFAI's
inversion of I_coarse included) gets the refined codes; the decoder, latent_avg and SeFa
directions are unchanged, so the toy-difai trained against phase 10 loads against it (same
decoder fingerprint).

Phase 4's weaker w-norm pull (pSp's 0.005 below) let the codes leave latent_avg (w-norm 11 ->
16) and bought most of the gain: +0.6 dB in 1,000 steps, where phase 3 had gained 0.3 in 3,900.

Where phase 8's 23.74 dB stopped (stop 36; all against the 285 kimg generator, 256 test faces):
- Not over-fitting: the same encoder scores 23.78 / 23.77 / 23.74 dB on train faces 0-255,
  1000-1255 and the test faces.
- Not the loss: 3,000 more steps at lr 1e-4, w-norm 0.001 with the perceptual term (0.1) reach
  23.77; without it (L2 and w-norm only) 23.68: the recognizer's term helps PSNR.
- Not mainly the style blocks' width: each style's linear reads 32 features, so the encoder's
  codes lie in a 32-dim affine subspace per style; Adam on W+ restricted to those subspaces
  (first 64 test faces, from the encoder's codes) reaches 28.3 dB after 600 steps (29.5 with 32
  more directions per style, 30.5 unrestricted), far above the encoder's 23.5.
- Capacity, a little: from random weights, 4,000 steps of this file's recipe give 20.82 dB with
  this encoder (0.90 M parameters; 17.7 min beside a GAN run) and 21.02 with
  ``psp.widths=(48,64,96,128) psp.unit_counts=(1,2,3,1) psp.block_width=64
  psp.input_width=48`` (2.52 M; 25 min): +0.2 dB per step, about even per minute.
(The previous toy-psp, against the narrow toy StyleGAN2: 18.9 dB.)
(--config.pretrained.stylegan2=DIR trains against another converted generator;
--config.pretrained.init_from=toy-psp --config.psp.restyle_iterations=3 continues the shipped
encoders.)

An encoder fitted to DiFAI's use of it (stop 42; an extension, shipped at stop 44 as
``toy-psp-coarse``, the pSp toy-difai pairs with; toy-psp stays the image encoder): DiFAI inverts
the coarse net's blurry completion of a masked face, and the style image it decodes is what the
generator copies into the hole (held-out hole error of I_style 9.70 / 12.89 / 8.81 against
completion 00's 9.54 / 12.77 / 8.70; benchmarks/toy_inpainting.py's ``i_style_00`` row). With
``psp_train.input="coarse"`` the encoders read that completion (the frozen coarse net of
``pretrained.coarse_workdir``, training masks) and the loss compares with the whole face:

    python -m difai_jax.train --config configs/toy_psp.py --workdir runs/pspc \
        --config.pretrained.init_from=toy-psp --config.psp.restyle_iterations=3 \
        --config.psp_train.lambda_wnorm=0.001 --config.psp_train.lr=0.00005 \
        --config.psp_train.restyle_lr=0.0005 --config.psp_train.input=coarse \
        --config.pretrained.coarse_workdir=toy-difai --config.train.num_steps.psp=20000
    python -m difai_jax.export --workdir runs/pspc --out runs/pspc_export   # = toy-psp-coarse
    python -m benchmarks.toy_inpainting --psp runs/pspc_export   # with the shipped generator

2,307 steps (53 min at 0.7-0.8 steps/s, stopped with Ctrl-C), with toy-difai's generator
unchanged (200 test faces; training masks / squares / thick strokes): completion 00 9.42 /
12.37 / 8.68 (toy-psp: 9.54 / 12.77 / 8.70; 9.53 / 12.59 / 8.75 at step 750, 9.48 / 12.47 /
8.75 at 1,250), I_style 9.57 / 12.48 / 8.84; SeFa degree 5's perturbed completions 32.1 / 33.7
/ 31.4 (toy-psp: 31.6 / 33.2 / 31.0) with 1.48 / 2.19 / 1.19 attribute changes. Continued at
stop 43 (same command) to step 3,271 (stopped with Ctrl-C; at step 3,000: 9.45 / 12.42 / 8.70,
a plateau) and exported: that was toy-psp-coarse until stop 46. The generator trained 700 steps
against its style images (configs/toy_difai.py, step 6) brought completion 00 to 9.31 / 12.28 /
8.57. Against the 1,011 kimg generator (stop 47) it was continued 1,186 steps (31 min at 0.6
steps/s beside phase 13, stopped with Ctrl-C) with the command above, but
``--workdir runs/pspc47 --config.pretrained.init_from=toy-psp-coarse``, and exported: the
shipped toy-psp-coarse (configs/toy_difai.py, step 7, trains the generator against it).

pSp's ffhq_encode recipe (eladrich/pixel2style2pixel: L2 1.0, LPIPS 0.8, codes relative to
latent_avg, frozen decoder, batch 8) with what this project can run without downloaded weights
(difai_jax/training/stages/psp.py says why each differs): the perceptual term uses the toy-face
recognizer's features instead of ImageNet LPIPS, the identity loss (ArcFace) is left out, the
encoder starts from random weights instead of the ArcFace backbone, and the optimizer is Adam
instead of Ranger. The StyleGAN2 may also be trained in the same run: config.stages =
("stylegan2", "psp") with a stylegan2 section (configs/toy_stylegan2.py).
"""

import ml_collections

from configs import data_defaults
from configs import stage_defaults


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.stages = ("psp",)
  config.seed = 0
  config.image_size = 64
  config.data = data_defaults.default_data_config()
  config.data.source = "toy"
  config.data.verify_files = False
  config.data.num_workers = 0

  config.pretrained = ml_collections.ConfigDict()
  # The frozen generator: a converted directory of kind stylegan2 (the shipped wide toy one).
  config.pretrained.stylegan2 = "toy-stylegan2-wide"
  # A trained pSp (exported directory, short name or pSp workdir) whose encoder a new run
  # continues; the frozen decoder stays the one above. "" = random weights, as pSp without
  # its ArcFace backbone.
  config.pretrained.init_from = ""
  # With psp_train.input="coarse": the coarse net whose completions the encoder reads.
  config.pretrained.coarse_workdir = ""

  config.psp = stage_defaults.psp()
  config.psp_train = stage_defaults.psp_train()
  # Adam at 5x pSp's 1e-4: pSp trains 500k steps from an ArcFace-initialised body; this
  # encoder starts from random weights and gets a few thousand steps on 2 CPU cores.
  config.psp_train.lr = 5e-4
  # The perceptual term: the toy-face recognizer's features (shipped: toy-recognizer) in LPIPS's
  # parameter-free form (no ImageNet LPIPS here); "ms_ssim" or "" (L2 + w-norm only) otherwise.
  config.psp_train.perceptual = "toy-recognizer"
  # pSp weighs LPIPS 0.8 against L2 1.0, which makes the perceptual term several times the L2
  # term on a blurry reconstruction. The recognizer's distance runs larger than LPIPS (its taps'
  # channel-normalised differences are summed without LPIPS's learned, small weights): a face
  # blurred through 16 px scores 1.28 against an L2 of 0.018, so 0.1 keeps the perceptual term
  # about 7x the L2 term there, pSp's balance. (With "ms_ssim", 1 - MS-SSIM is on LPIPS's
  # scale: use 0.8.)
  config.psp_train.lambda_perceptual = 0.1
  config.psp_train.lambda_l2 = 1.0
  # pSp's value for its image-to-image tasks: keeps codes near latent_avg, where DiFAI's SeFa
  # edits of the (blurry) coarse completion's codes stay plausible faces.
  config.psp_train.lambda_wnorm = 0.005

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 8             # pSp's ffhq_encode batch size
  config.train.num_steps = ml_collections.ConfigDict({"psp": 4_000})
  config.train.ema_decay = 0.0            # unused: psp_train.ema_decay (pSp keeps no EMA)
  config.train.log_every = 50
  config.train.sample_every = 500
  config.train.checkpoint_every = 250
  config.train.keep_checkpoints = 2
  return config
