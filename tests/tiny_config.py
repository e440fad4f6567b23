"""The smallest training config: 32 px toy faces, both stages, random frozen networks.

Used by the training tests (and handy for smoke runs):
    python -m difai_jax.train --config tests/tiny_config.py --workdir /tmp/tiny
"""

from configs import demo


def get_config():
  config = demo.get_config()
  config.image_size = 32
  config.coarse.widths = (4, 8, 12, 16)
  config.coarse.floor_stride = 4                     # floors at 8, 4, 2 px
  config.coarse.ms_ssim_weights = (0.1356, 0.8644)   # 2 scales fit 32 px
  config.generator.encoder_widths = (8, 16)
  config.generator.decoder_widths = (16, 16, 8)
  config.generator.spade_hidden = 8
  config.critic.widths = (8, 16)
  config.pretrained.psp = ""                 # a random tiny pSp (below), not the shipped one
  config.pretrained.init_from = ""           # random init (the demo starts from toy-difai)
  config.pretrained.random_psp.decoder_size = 32
  config.pretrained.random_psp.decoder_channels = (16,) * 4
  config.pretrained.random_psp.style_dim = 16
  config.pretrained.random_psp.widths = (16, 16, 16, 16)   # >= 16: SE reduction 16
  config.pretrained.random_psp.input_width = 8
  config.pretrained.random_psp.input_size = 32
  config.pretrained.random_vgg_width_divisor = 16
  config.loss.ms_ssim_weights = (0.1356, 0.8644)   # 2 scales fit 32 px
  config.train.batch_size = 4
  config.train.num_steps = {"coarse": 4, "difai": 4}
  config.train.log_every = 1
  config.train.sample_every = 0
  config.train.checkpoint_every = 2
  return config
