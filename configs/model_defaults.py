"""Architecture defaults of DiFAI's trainable networks at 256 px (CelebA-HQ, the paper's setting).

``configs/celebahq.py`` builds its ``coarse``, ``generator`` and ``critic`` sections from these
functions; ``get_config()`` bundles them so that the parameter summary runs on this file alone:

    python -m difai_jax.models.summary --config configs/model_defaults.py

Each section holds the constructor fields of its module (``difai_jax.models.*.from_config``)
plus, where noted, the loss weights that belong to that network.
"""

import ml_collections


def coarse_config() -> ml_collections.ConfigDict:
  """The coarse net (the paper's customised MLGN; DESIGN.md "Coarse net (cMLGN)")."""
  c = ml_collections.ConfigDict()
  # Feature widths at full, 1/2, 1/4, 1/8 resolution: three stride-2 downsamplings (DESIGN).
  # Kept narrower than the generator: the coarse result is meant to be smooth, not detailed.
  c.widths = (64, 128, 256, 256)
  # One dilated residual block per entry at 1/8 resolution (32 px at 256 px input); dilations
  # up to 16 let the bottleneck see the whole 32 x 32 map, so large holes get global context.
  c.dilations = (2, 4, 8, 16)
  # Compute dtype; params stay float32 (DESIGN: float32 on CPU, bfloat16 allowed on TPU/GPU).
  c.dtype = "float32"
  # --- loss (coarse_loss) ---
  # Hole / known-region L1 weights: 6 / 1 as the partial-convolution loss (Liu et al. 2018) that
  # the paper's reconstruction terms descend from.
  c.hole_weight = 6.0
  c.valid_weight = 1.0
  # Weights of the (full, 1/2, 1/4) L1 terms: multi-level supervision, equal weights.
  c.scale_weights = (1.0, 1.0, 1.0)
  # Adversarial weight: the paper's "customised lambda". 0 makes the completion blurry on
  # purpose, which gives pSp room for diverse codes (DESIGN.md).
  c.lambda_adv = 0.0
  return c


def generator_config() -> ml_collections.ConfigDict:
  """The DiFAI generator G(I_masked, I_style', M) (paper "SPARN"; DESIGN.md "DiFAI generator")."""
  c = ml_collections.ConfigDict()
  # Content encoder: conv 7x7 to 64, then stride-2 convs to 128-256-512-512: 256 px -> 16 px
  # (SPADE-style encoder, DESIGN).
  c.encoder_widths = (64, 128, 256, 512, 512)
  # SPARN res-blocks at 16, 32, 64, 128, 256 px (DESIGN; SPADE generator widths).
  c.decoder_widths = (512, 512, 256, 128, 64)
  # 'sparn' (the paper), 'spade' or 'batch': the three columns of the paper's Table 3.
  c.norm = "sparn"
  # Region statistics per sample ('instance'): a sample's output never depends on its
  # batch-mates; 'batch' reproduces RN-B's batch-wide statistics (Yu et al. 2020).
  c.rn_stats = "instance"
  # Hidden width of SPARN's shared conv on the condition (SPADE's nhidden = 128).
  c.spade_hidden = 128
  # Normalisation epsilon (PyTorch BatchNorm default, also RN's).
  c.eps = 1e-5
  c.dtype = "float32"
  return c


def critic_config() -> ml_collections.ConfigDict:
  """The spectral-norm WGAN-GP critic (paper eq. 9-10; DESIGN.md "Critic")."""
  c = ml_collections.ConfigDict()
  # 4x4 stride-2 convs with leaky ReLU 0.2, no normalisation layers: 256 px -> 8 px (DESIGN).
  c.widths = (64, 128, 256, 512, 512)
  # Last conv to one channel, averaged to one score per image.
  c.final_kernel = 3
  # One power iteration per training step, eps 1e-12: PyTorch's spectral_norm defaults.
  c.sn_steps = 1
  c.sn_eps = 1e-12
  c.dtype = "float32"
  # --- loss ---
  # Gradient-penalty weight of WGAN-GP (Gulrajani et al. 2017; DESIGN).
  c.lambda_gp = 10.0
  return c


def get_config() -> ml_collections.ConfigDict:
  """The three 256 px model sections, as configs/celebahq.py lays them out."""
  config = ml_collections.ConfigDict()
  # CelebA-HQ at 256 x 256 (paper, experiments).
  config.image_size = 256
  config.coarse = coarse_config()
  config.generator = generator_config()
  config.critic = critic_config()
  return config
