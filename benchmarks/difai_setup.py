"""The DiFAI networks of a config with random weights, built the way ``difai_jax.train`` does.

Shared by ``benchmarks.train_step`` and ``benchmarks.inference``. Frozen networks come from
``checkpoints.load_pretrained`` with ``pretrained.random_init`` (the config's small random pSp),
or, with ``psp='ffhq'``, a random pSp of the FFHQ shape the paper uses (IR-SE50 encoder, 18
styles, 1024 px config-f decoder average-pooled to 256 px): same cost as converted weights,
without needing them. The coarse net is randomly initialised (train.py loads a trained one).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from difai_jax.training import checkpoints
from difai_jax import pipeline
from difai_jax.nn import precision
from difai_jax import sefa as sefa_lib
from difai_jax.models import coarse as coarse_lib
from difai_jax.models import critic as critic_lib
from difai_jax.models import psp as psp_lib
from difai_jax.models import sparn as sparn_lib
from difai_jax.models import stylegan2


def load_config(name: str) -> ml_collections.ConfigDict:
  """``demo`` (64 px, narrow nets) or ``celebahq`` (256 px, the paper's widths), random frozen
  networks allowed."""
  if name == "demo":
    from configs import demo  # pylint: disable=import-outside-toplevel
    config = demo.get_config()
  elif name == "celebahq":
    from configs import celebahq  # pylint: disable=import-outside-toplevel
    config = celebahq.get_config()
    config.data.source = "toy"          # no dataset needed to time a step
    config.data.num_workers = 0
    config.data.verify_files = False
  else:
    raise ValueError(f"--config must be 'demo' or 'celebahq', got {name!r}")
  config.pretrained.random_init = True
  return config


def ffhq_psp(seed: int):
  """A randomly initialised pSp of the FFHQ encoder's shape (what DiFAI runs at 256 px)."""
  decoder = stylegan2.Generator(size=1024)
  encoder = psp_lib.GradualStyleEncoder(n_styles=decoder.n_latent, style_dim=512)
  module = psp_lib.PSP(encoder=encoder, decoder=decoder, input_size=256, pool_size=256)
  variables = jax.jit(module.init)(jax.random.key(seed), jnp.zeros((1, 256, 256, 3)))
  return module, variables


@dataclasses.dataclass
class Networks:
  models: pipeline.Models
  frozen: dict[str, Any]          # {"coarse", "psp", "vgg", "sefa"}
  critic: Any
  vgg: Any
  description: str


def build(config: ml_collections.ConfigDict, psp: str = "config") -> Networks:
  """Every network of the DiFAI stage, frozen variables included (random weights)."""
  size = config.image_size
  key = jax.random.key(config.seed)
  coarse = coarse_lib.from_config(config.coarse)
  coarse_vars = jax.jit(coarse.init)(key, jnp.zeros((1, size, size, 3)),
                                     jnp.ones((1, size, size, 1)))
  if psp == "ffhq":
    psp_module, psp_vars = ffhq_psp(config.seed)
    # The compute dtype load_pretrained would give a converted pSp.
    psp_module = precision.with_dtype(psp_module,
                                      (config.pretrained.get("dtype") or {}).get("psp", "float32"))
    psp_text = "random pSp of FFHQ shape (IR-SE50, 1024 px decoder)"
  else:
    psp_module, psp_vars = checkpoints.load_pretrained(config, "psp")
    psp_text = (f"the config's random pSp ({psp_module.decoder.size} px decoder, "
                f"style_dim {psp_module.decoder.style_dim})")
  vgg, vgg_vars = checkpoints.load_pretrained(config, "vgg19")
  factors = sefa_lib.factorize(psp_vars["params"]["decoder"], config.sefa.method,
                               config.sefa.factor_layers)
  models = pipeline.Models(coarse=coarse, psp=psp_module,
                           generator=sparn_lib.from_config(config.generator), image_size=size,
                           psp_decode_size=config.pretrained.get("psp_decode_size", 0))
  frozen = {"coarse": {"params": coarse_vars["params"]}, "psp": psp_vars, "vgg": vgg_vars,
            "sefa": factors.directions}
  critic = critic_lib.from_config(config.critic)
  return Networks(models, frozen, critic, vgg, psp_text)


def build_abstract(config: ml_collections.ConfigDict, psp: str = "config") -> Networks:
  """``build`` without computing anything: the frozen variables are ``jax.ShapeDtypeStruct``s
  (every initialiser and the SeFa factorisation only traced, under ``jax.eval_shape``)."""
  built = []

  def frozen():
    built.append(build(config, psp))
    return built[0].frozen

  shapes = jax.eval_shape(frozen)
  return dataclasses.replace(built[0], frozen=shapes)
