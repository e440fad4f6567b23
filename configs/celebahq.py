"""DiFAI on CelebA-HQ 256 (the paper's main setting): trains G and the critic.

    python -m difai_jax.train --config configs/celebahq.py --workdir runs/difai \
        --config.data.path=/data/celeba_hq_256 \
        --config.pretrained.psp=weights/psp_ffhq_encode \
        --config.pretrained.vgg19=weights/vgg19 \
        --config.pretrained.coarse_workdir=runs/coarse

Needs: the coarse stage (configs/celebahq_coarse.py), a converted pSp FFHQ encoder
(python -m weights_conversion.psp psp_ffhq_encode.pt DIR; its 1024 px StyleGAN2 decoder is the
generator whose SeFa directions give the diverse style images) and a converted torchvision VGG-19
(python -m weights_conversion.vgg19 vgg19-dcbb9e9d.pth DIR).
Ablations of Table 3: --config.generator.norm=spade  /  --config.generator.norm=batch.
"""

import ml_collections

from configs import model_defaults
from configs import data_defaults


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  # Which stages this run trains, in order (see configs/demo.py for both back to back).
  config.stages = ("difai",)
  config.seed = 0
  # Matmul / conv precision of every network (difai_jax/nn/precision.py): "default" is each
  # backend's fastest float32 (one bfloat16 pass on TPU, TF32 on recent GPUs, exact on CPU);
  # "highest" is what the parity tests use.
  config.precision = "default"
  # CelebA-HQ at 256 x 256, 28,000 train / 2,000 test (paper, section 4).
  config.image_size = 256

  config.data = data_defaults.default_data_config()
  config.data.source = "folder"            # CelebA-HQ images as users have them
  config.data.num_workers = 8              # decoding + mask drawing off the main process

  config.coarse = model_defaults.coarse_config()
  config.generator = model_defaults.generator_config()
  config.critic = model_defaults.critic_config()

  # Frozen pretrained networks: converted directories (nothing is downloaded).
  config.pretrained = ml_collections.ConfigDict()
  config.pretrained.psp = ""               # pSp FFHQ encoder + its StyleGAN2 decoder
  config.pretrained.vgg19 = ""             # torchvision VGG-19 (perceptual / style losses)
  config.pretrained.coarse_workdir = ""    # workdir of the coarse stage
  # NOT the paper when set: the network whose feature maps L_per and L_style compare (eq. 6-7)
  # instead of VGG-19, a converted directory of kind vgg19 or toy_recognizer (toy-recognizer:
  # features trained on the toy faces). "" = VGG-19 from pretrained.vgg19 (the paper).
  config.pretrained.feature_net = ""
  # Start a new run's trained networks (coarse net, generator) from another DiFAI run of the
  # same architecture (a workdir or a short name: toy-difai) instead of random weights; the
  # optimizers and the critic start fresh. "" = random init (the paper).
  config.pretrained.init_from = ""
  # Compute dtype of each frozen network (difai_jax/nn/precision.py); its weights stay float32.
  # "bfloat16" halves their activation memory on GPU / TPU; what it costs in accuracy is in
  # benchmarks/RESULTS.md ("bfloat16 tolerance").
  config.pretrained.dtype = ml_collections.ConfigDict({"psp": "float32", "vgg19": "float32"})
  # NOT the paper (speed option, off): stop the StyleGAN2 decode of the 1 + alpha style images
  # at this resolution (its ToRGB skip image) instead of decoding at 1024 px and pooling to 256.
  # 0 = full resolution (paper); 256 skips the 512 / 1024 px layers. Its cost in image
  # difference and its FLOP saving: benchmarks/RESULTS.md ("frozen path cost").
  config.pretrained.psp_decode_size = 0
  # Random frozen pSp / VGG instead of converted ones: demos and tests only.
  config.pretrained.random_init = False
  config.pretrained.random_vgg_width_divisor = 1
  config.pretrained.random_psp = ml_collections.ConfigDict({
      "decoder_size": 64, "style_dim": 64, "n_mlp": 2, "decoder_channels": (64,) * 5,
      "unit_counts": (1, 1, 1, 1), "widths": (16, 16, 32, 64), "input_width": 16,
      "input_size": 64})

  # SeFa (eq. 3): directions of the decoder's conv modulations (the SeFa paper's form), and how
  # training draws the alpha perturbed style images per sample.
  config.sefa = ml_collections.ConfigDict()
  config.sefa.method = "genforce"          # or "rosinality" (its svd over conv + to_rgb1)
  # Modulations factorised: "" = the method's default (genforce: its layer_idx='all', every
  # conv layer and the last ToRGB); "conv", "rosinality", "every", or layer names separated by
  # commas ("conv1,convs_0,to_rgbs_7").
  config.sefa.factor_layers = ""
  # K: the completions per input in training, 1 unperturbed + K - 1 = alpha perturbed style
  # images (the paper shows alpha = 2 per input).
  config.sefa.num_completions = 3
  # Deprecated name (kept one release): alpha = K - 1; when set it wins, with a warning.
  config.sefa.num_edits = ml_collections.config_dict.placeholder(int)
  config.sefa.top_k = 8                    # draw directions among the 8 strongest
  config.sefa.min_degree = 2.0             # |d_i| in [2, 5]: visible but still face-like edits
  config.sefa.max_degree = 5.0
  config.sefa.layers = ()                  # W+ layers moved; () = all

  # Eq. 11: L = L_per + lambda_sty L_sty + lambda_hole L_hole + lambda_valid L_valid
  #            + lambda_ssim L_ssim + lambda_adv L_adv. Eq. 11 puts no lambda on L_per (weight 1).
  # The paper prints five names and four values ("lambda_adv, lambda_ssim, lambda_sty,
  # lambda_hole, and lambda_valid are set to 0.5, 120, 3, and 0.5"). Our reading:
  # (style, hole, valid) = (120, 3, 0.5): hole : valid = 6 : 1 and style 120 are exactly the
  # partial-convolution loss's weights (Liu et al. 2018: valid 1, hole 6, perceptual 0.05,
  # style 120), from which these terms descend. The remaining 0.5 goes to adversarial, the
  # first name of the sentence; lambda_ssim, whose value is not printed, takes unit weight like
  # L_per (the reference scale of a term without a printed weight). Every lambda is one
  # --config.loss.lambdas.x=y away.
  config.loss = ml_collections.ConfigDict()
  config.loss.lambdas = ml_collections.ConfigDict({
      "hole": 3.0, "valid": 0.5, "perceptual": 1.0, "style": 120.0, "ms_ssim": 1.0,
      "adversarial": 0.5})
  # Those weights assume the partial-convolution loss's normalisation of the L1 terms: averaged
  # over all pixels of the image ("image"), not over each region's own pixels ("region", which
  # scales the hole term by 1 / hole ratio).
  config.loss.l1_normalization = "image"
  # pytorch-msssim's five scale weights (eq. 8); 256 px images allow all five.
  config.loss.ms_ssim_weights = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)

  config.optim = ml_collections.ConfigDict()
  # Adam with WGAN-GP's betas (Gulrajani et al. 2017: lr 1e-4, b1 0, b2 0.9).
  config.optim.g_lr = 1e-4
  config.optim.d_lr = 1e-4
  config.optim.b1 = 0.0
  config.optim.b2 = 0.9
  config.optim.grad_clip = 0.0             # global-norm clipping; 0 = off
  # Critic updates per generator update. 1 alternates per batch, as most inpainting GANs do
  # (WGAN-GP's own choice, 5, is one override away).
  config.optim.n_critic = 1

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 8              # global, over all devices and hosts
  config.train.num_steps = ml_collections.ConfigDict({"coarse": 200_000, "difai": 300_000})
  # The paper mentions no EMA. We keep one (decay 0.999) for sampling and evaluation, as
  # StyleGAN2 and most GAN codebases do; evaluate prints which weights it scored, and 0 turns
  # it off (evaluate then scores the trained weights).
  config.train.ema_decay = 0.999
  config.train.log_every = 100
  config.train.sample_every = 2_000        # PNG grid in WORKDIR/samples
  config.train.checkpoint_every = 5_000
  config.train.keep_checkpoints = 3
  return config
