"""Stage 1 on CelebA-HQ 256: the coarse net (the paper's customised MLGN).

    python -m difai_jax.train --config configs/celebahq_coarse.py --workdir runs/coarse \
        --config.data.path=/data/celeba_hq_256

The net and its loss are MLGN's (JieLiu95/MLGN; ``models.coarse``): SmoothL1 on the hole
(``coarse.lambda_rec``) plus 1 - MS-SSIM of the composite (``coarse.lambda_ms_ssim``). The
adversarial weight ``coarse.lambda_adv`` stays 0 (the paper's customised lambda: a blurry
completion gives pSp room for diverse codes); set it > 0 to add a WGAN-GP critic.
"""

from configs import celebahq


def get_config():
  config = celebahq.get_config()
  config.stages = ("coarse",)
  # A blurry coarse face needs no frozen networks: nothing pretrained is loaded in this stage.
  return config
