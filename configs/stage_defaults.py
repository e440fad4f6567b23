"""Defaults of the toy networks' training stages (``config.stylegan2``, ``config.psp``,
``config.psp_train``, ``config.recognizer``): plain data, imported by the config files (which
import nothing from ``difai_jax``) and by the stages (``training/stages/*.config_defaults``),
which fill them into configs that lack a section.
"""

import ml_collections


def stylegan2() -> ml_collections.ConfigDict:
  """``config.stylegan2`` defaults: rosinality's recipe, narrow widths for 64 px toy faces."""
  c = ml_collections.ConfigDict()
  c.size = 64
  c.style_dim = 128
  c.n_mlp = 4
  c.lr_mlp = 0.01
  c.channels = (128, 128, 64, 32, 16)     # resolutions 4, 8, ..., 64
  c.d_channels = (128, 128, 64, 32, 16)
  c.lr = 0.002                            # rosinality's default
  c.r1 = 10.0
  c.d_reg_every = 16
  c.path_regularize = 2.0
  c.g_reg_every = 4
  c.path_batch_shrink = 2
  c.mixing = 0.9
  c.ema_kimg = 10.0                       # rosinality: 0.5 ** (32 / (10 * 1000)) at batch 32
  c.augment = ()                          # e.g. ("color", "translation", "cutout")
  # A second critic on a frozen feature network's embedding (not rosinality's; after Projected
  # GAN, Sauer et al. 2021): a toy_recognizer directory or short name ("toy-recognizer"; the
  # judge is refused), "" for none. feature_d_weight weighs its term in G's loss (D's image
  # term weighs 1); feature_d_r1 is its R1 weight, on the embedding, every step.
  c.feature_d = ""
  c.feature_d_weight = 1.0
  c.feature_d_width = 256
  c.feature_d_r1 = 1.0
  # Weight of the attribute-frequency term (0 = off; needs feature_d): the squared gap between
  # the recognizer's mean softmax over G's samples (a running mean, decay
  # feature_d_attribute_decay per step) and over feature_d_attribute_faces train faces.
  c.feature_d_attributes = 0.0
  c.feature_d_attribute_faces = 2000
  c.feature_d_attribute_decay = 0.98
  # The recognizer's logits are divided by this before the softmax that is averaged (both the
  # targets and G's samples): < 1 pulls the frequencies of predicted labels, not mean softmaxes;
  # 0 counts the predicted labels themselves (the gradient through the softmax at 1).
  c.feature_d_attribute_temperature = 1.0
  # Take the term's gradient at the EMA generator (on extra samples of it), not at G's own
  # weights: the EMA one is exported; G's own attribute frequencies swing by 10-30 points
  # within a few hundred steps, so pulling on them barely moves the EMA's. The EMA answers the
  # pull hundreds of steps late: on the toy faces weight 30 diverged, 3 stayed stable.
  c.feature_d_attribute_on_ema = False
  # Weigh each class's squared gap by 1 / (classes x target frequency) (Pearson's chi-square
  # over the class count): a point missing from a rare class (bald heads, 5 %) pulls as hard as
  # ten from a common one. Off: every class weighs 1.
  c.feature_d_attribute_balanced = False
  return c


def psp() -> ml_collections.ConfigDict:
  """``config.psp``: the encoder's architecture, narrow for 64 px toy faces.

  Four stages of IR-SE units (pSp's IR-SE50 has 3/4/14/3 units of widths 64/128/256/512); at
  64 px input the taps c1 / c2 / c3 are 16 / 8 / 4 px, as 64 / 32 / 16 px at pSp's 256.
  """
  c = ml_collections.ConfigDict()
  c.mode = "ir_se"
  c.unit_counts = (1, 2, 2, 1)
  c.widths = (32, 48, 64, 96)
  c.input_width = 32
  c.se_reduction = 16
  # The style blocks' conv width (pSp: the style width, 512). 10 blocks of up to 4 convs hold
  # most of an encoder's parameters: 32 keeps the toy encoder under 1 M parameters (4 MB).
  c.block_width = 32
  c.coarse_ind = 3                        # pSp: styles 0-2 read c3, 3-6 p2, the rest p1
  c.middle_ind = 7
  # ReStyle's iterative refinement (an extension, not pSp's or DiFAI's): this many passes of a
  # second encoder that reads the image and the current reconstruction and adds a residual to
  # the codes. 0 = pSp's single pass (converted pSp weights always have 0).
  c.restyle_iterations = 0
  return c


def psp_train() -> ml_collections.ConfigDict:
  """``config.psp_train``: pSp's ffhq_encode recipe, with the substitutions of the docstring."""
  c = ml_collections.ConfigDict()
  c.lr = 1e-4                             # pSp's learning_rate (with Ranger; Adam here)
  c.b1 = 0.9
  c.b2 = 0.999
  c.lambda_l2 = 1.0                       # pSp's l2_lambda for ffhq_encode
  c.lambda_perceptual = 0.8               # pSp's lpips_lambda for ffhq_encode
  # pSp: 0 for ffhq_encode, 0.005 for its image-to-image tasks (super-resolution, sketches,
  # segmentation), whose inputs lack detail as DiFAI's coarse completions do.
  c.lambda_wnorm = 0.005
  # "" (none) | "ms_ssim" | a converted directory (or shipped short name, "toy-recognizer") of
  # kind lpips / vgg19 / toy_recognizer.
  c.perceptual = ""
  c.ms_ssim_weights = (0.0710, 0.4529, 0.4761)   # for perceptual="ms_ssim": 3 scales fit 64 px
  c.randomize_noise = True                # pSp's forward default while training
  c.latent_avg_samples = 100_000          # pSp: mean_latent(int(1e5))
  c.ema_decay = 0.0                       # pSp keeps no EMA of the encoder
  # With psp.restyle_iterations: the ReStyle encoder's Adam learning rate (0: lr above).
  c.restyle_lr = 0.0
  # What the encoder reads: "image" (pSp: the face it reconstructs) or "coarse" (an extension:
  # the coarse net of pretrained.coarse_workdir's completion of the face under a training
  # mask, what DiFAI inverts; the loss still compares with the whole face).
  c.input = "image"
  return c


def recognizer() -> ml_collections.ConfigDict:
  """``config.recognizer``: the architecture, the optimiser and the data of the stage."""
  c = ml_collections.ConfigDict()
  c.widths = (16, 32, 64, 64)      # 64 -> 4 px in four levels; ~220k parameters in all
  c.feature_dim = 128              # the embedding (toy-FID features)
  c.bottleneck = 32
  c.input_size = 64
  c.groups = 8
  c.lr = 2e-3
  c.warmup_steps = 100
  c.weight_decay = 1e-4            # AdamW's decoupled decay: a little regularisation
  c.num_train_faces = 28000        # distinct train faces drawn from (<= data.num_train)
  c.max_shift = 4                  # random translation (px at 64 px, scaled with image_size)
  return c
