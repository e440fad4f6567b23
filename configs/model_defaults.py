"""Architecture defaults of DiFAI's trainable networks at 256 px (CelebA-HQ, the paper's setting).

``configs/celebahq.py`` builds its ``coarse``, ``generator`` and ``critic`` sections from these
functions; ``get_config()`` bundles them so that the parameter summary runs on this file alone:

    python -m difai_jax.summary --config configs/model_defaults.py

Each section holds the constructor fields of its module (``difai_jax.models.*.from_config``)
plus, where noted, the loss weights that belong to that network.
"""

import ml_collections


def coarse_config() -> ml_collections.ConfigDict:
  """The coarse net: MLGN with the customised lambda."""
  c = ml_collections.ConfigDict()
  # MLGN's four channel counts (JieLiu95/MLGN Models/models_gd.py Generator): 64 at full to 1/4
  # resolution, 128 on floors 1-2, 192 in the stem at 1/8, 256 on floor 0.
  c.widths = (64, 128, 192, 256)
  # Input size / floor-0 size: 16 as MLGN, i.e. floors at 16, 8 and 4 px for 256 px input.
  c.floor_stride = 16
  # Compute dtype; params stay float32 (float32 on CPU; bfloat16 is for TPU / GPU).
  c.dtype = "float32"
  # --- loss (coarse_loss; MLGN Models/inpainting_model.py backward_G) ---
  # SmoothL1 of the hole: weighted by MLGN's lambda_l1, commented "lambda=100" there (its
  # options file is not published).
  c.lambda_rec = 100.0
  # 1 - MS-SSIM of the composite: MLGN's weight 5.
  c.lambda_ms_ssim = 5.0
  # MS-SSIM scales: pytorch-msssim's five (MLGN uses pytorch_msssim.MS_SSIM(data_range=1)).
  c.ms_ssim_weights = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
  # Adversarial weight: the paper's "customised lambda" (MLGN: 5). 0 makes the completion blurry
  # on purpose, which gives pSp room for diverse codes. > 0 adds the WGAN-GP critic.
  c.lambda_adv = 0.0
  return c


def generator_config() -> ml_collections.ConfigDict:
  """The DiFAI generator G(I_masked, I_style', M) (paper "SPARN")."""
  c = ml_collections.ConfigDict()
  # Content encoder: SPADE's ConvEncoder (NVlabs/SPADE encoder.py, norm_E='spectralinstance':
  # 3x3 stride-2 convs, spectral norm + instance norm, leaky ReLU 0.2), kept spatial. 'plain'
  # (a 7x7 conv then plain stride-2 convs, no normalisation) is the option.
  c.encoder = "spade"
  # One stride-2 conv per width: SPADE's ngf = 64 doubling to 512, four of them so that
  # 256 px -> 16 px, the first decoder resolution.
  c.encoder_widths = (64, 128, 256, 512)
  # SPARN res-blocks at 16, 32, 64, 128, 256 px (SPADE generator widths).
  c.decoder_widths = (512, 512, 256, 128, 64)
  # 'sparn' (the paper), 'spade' or 'batch': the three columns of the paper's Table 3.
  c.norm = "sparn"
  # Region statistics over the batch, as RN-B (Yu et al. 2020; geekyutao/RN rn.py keeps no
  # running statistics, so also at inference), pooled over the N images of each style variant j
  # and never across the K variants: a completion depends on its batch-mates but not on K.
  # 'instance': per sample, independent of the batch.
  c.rn_stats = "batch"
  # Spectral norm on the encoder's convs and the res-blocks' conv_0 / conv_1 / conv_s (SPADE's
  # 'spectral' prefix of norm_E and norm_G: spectralinstance / spectralspadesyncbatch3x3).
  c.spectral_norm = True
  # Hidden width of SPARN's shared conv on the condition (SPADE's nhidden = 128).
  c.spade_hidden = 128
  # Normalisation epsilon (PyTorch BatchNorm default, also RN's).
  c.eps = 1e-5
  c.dtype = "float32"
  return c


def critic_config() -> ml_collections.ConfigDict:
  """The spectral-norm WGAN-GP critic (paper eq. 9-10)."""
  c = ml_collections.ConfigDict()
  # 4x4 stride-2 convs with leaky ReLU 0.2, no normalisation layers: 256 px -> 8 px.
  c.widths = (64, 128, 256, 512, 512)
  # Last conv to one channel, averaged to one score per image.
  c.final_kernel = 3
  # One power iteration per training step, eps 1e-12: PyTorch's spectral_norm defaults.
  c.sn_steps = 1
  c.sn_eps = 1e-12
  c.dtype = "float32"
  # --- loss ---
  # Gradient-penalty weight of WGAN-GP (Gulrajani et al. 2017).
  c.lambda_gp = 10.0
  # What the critic scores: "raw" generator outputs I_out (eq. 9-10 write D(G(...)) and
  # D(I_out)), or "composite" (I_masked + hole * I_out; not the paper's).
  c.input = "raw"
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
