"""The embedded default: both stages on procedurally drawn toy faces with the shipped toy
networks, on 2 CPU cores in a few minutes.

    python -m difai_jax.train --config configs/demo.py --workdir runs/demo

It continues training the shipped toy DiFAI (``pretrained.init_from = "toy-difai"``: coarse net
and generator start from its weights, the optimizers and critic fresh) for a few steps, so that
its sample grid shows what the method does within minutes; from random weights DiFAI needs
~1,000 steps (~30 min here) and its coarse net thousands (configs/toy_coarse.py and
configs/toy_difai.py made the shipped checkpoint). ``--config.pretrained.init_from=`` trains
from scratch.

The frozen pSp and its StyleGAN2 decoder are the ones trained on the toy faces by this repo
(``toy-psp``, difai_jax/assets/toy/psp; README "Shipped toy networks" gives the commands), so
the style images are toy faces and the completions differ in the hole as their SeFa-perturbed
style images do. VGG-19 stays random (no ImageNet weights can be shipped; set
--config.pretrained.vgg19 to a converted one). Ends with WORKDIR/difai/samples/difai_*.png:
masked input, coarse, I_style, the alpha + 1 completions, ground truth.
"""

from configs import celebahq


def get_config():
  config = celebahq.get_config()
  config.stages = ("coarse", "difai")
  config.image_size = 64                   # tiny: fast on CPU
  config.data.source = "toy"
  config.data.num_workers = 0
  config.data.verify_files = False
  config.data.masks_per_bucket = 200       # evaluation masks: enough for a CPU demo evaluation

  # Narrow networks (the 256 px widths divided by 4-8), same structure.
  # Coarse MLGN: its widths / 4 (configs/toy_coarse.py trained it; /16 learned a flat fill);
  # floor_stride 4 puts the floors at 16, 8, 4 px, the sizes MLGN's floors have at 256 px
  # (its 16 would put floor 2 at 1 px; 8, the earlier toy net's, at 8, 4, 2 px lost thin
  # detail), 3 MS-SSIM scales fit 64 px.
  config.coarse.widths = (16, 32, 48, 64)
  config.coarse.floor_stride = 4
  config.coarse.ms_ssim_weights = (0.0710, 0.4529, 0.4761)
  config.generator.encoder_widths = (16, 32, 64, 64)
  config.generator.decoder_widths = (64, 64, 64, 32, 16)
  config.generator.spade_hidden = 32
  config.critic.widths = (16, 32, 64, 64)

  config.pretrained.psp = "toy-psp"        # shipped: trained on toy faces (README)
  config.pretrained.random_init = True     # VGG-19 only: random frozen features
  config.pretrained.random_vgg_width_divisor = 8

  config.sefa.top_k = 4
  # SeFa degrees: beyond about +-4 the toy StyleGAN2's style images stop being faces.
  config.sefa.min_degree = 2.0
  config.sefa.max_degree = 4.0
  config.pretrained.init_from = "toy-difai"   # shipped: see the docstring

  # 64 px allows three MS-SSIM scales (pytorch-msssim's first three weights, renormalised).
  config.loss.ms_ssim_weights = (0.0710, 0.4529, 0.4761)
  config.loss.lambdas.adversarial = 0.05   # a young random critic: keep its pull small

  config.optim.g_lr = 1e-3
  config.optim.d_lr = 1e-3
  config.optim.b1 = 0.5
  config.optim.b2 = 0.99
  config.train.batch_size = 8
  # A few steps on top of toy-difai (timings: README quick start). From scratch (init_from
  # unset) the shipped recipe is 5,500 coarse steps x 16 (configs/toy_coarse.py) and 1,400
  # DiFAI steps (configs/toy_difai.py).
  config.train.num_steps = {"coarse": 20, "difai": 40}
  config.train.ema_decay = 0.0
  config.train.log_every = 10
  config.train.sample_every = 40
  config.train.checkpoint_every = 20
  return config
