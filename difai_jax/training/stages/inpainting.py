"""The paper's two training stages: ``coarse`` (the coarse net) and ``difai`` (G and critic).

Stage ``coarse`` trains the coarse net on (I_masked, mask) with its own loss, plus a WGAN-GP
critic when ``coarse.lambda_adv > 0``. Stage ``difai`` trains the SPARN generator and the
spectral-norm critic with the coarse net, pSp (with its StyleGAN2 decoder) and VGG-19 frozen
(paper eq. 1-11); its step is :func:`difai_jax.training.steps.difai_train_step`.
"""

from __future__ import annotations

import functools
import os
import warnings

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from difai_jax import pipeline
from difai_jax import pretrained
from difai_jax import sefa as sefa_lib
from difai_jax.data import loader as data_pipeline
from difai_jax.models import coarse as coarse_lib
from difai_jax.models import critic as critic_lib
from difai_jax.models import sparn as sparn_lib
from difai_jax.nn import parameter_count
from difai_jax.training import checkpoints
from difai_jax.training import steps
from difai_jax.training.stage import Stage
from difai_jax.training.stage import StageSpec


def num_completions(sefa_config) -> int:
  """K of a config's ``sefa`` section (``num_completions``); ``num_edits`` (= K - 1, the name
  before) still counts, with a DeprecationWarning, for one release."""
  alpha = sefa_config.get("num_edits")
  if alpha is not None:
    warnings.warn("config.sefa.num_edits is deprecated; use config.sefa.num_completions "
                  "(= num_edits + 1)", DeprecationWarning, stacklevel=2)
    return int(alpha) + 1
  return int(sefa_config.get("num_completions", 3))


def step_config(config: ml_collections.ConfigDict) -> steps.StepConfig:
  """The static settings of the coarse / DiFAI step functions."""
  lambdas = tuple(sorted(config.loss.lambdas.to_dict().items()))
  sc = config.sefa
  return steps.StepConfig(
      lambdas=lambdas, lambda_gp=config.critic.lambda_gp, n_critic=config.optim.n_critic,
      ema_decay=config.train.ema_decay, ms_ssim_weights=tuple(config.loss.ms_ssim_weights),
      coarse_loss_kwargs=tuple(sorted(coarse_lib.loss_kwargs(config.coarse).items())),
      critic_input=config.critic.get("input", "raw"),
      l1_normalization=config.loss.get("l1_normalization", "image"),
      sefa=pipeline.SefaSampling(num_edits=num_completions(sc) - 1, top_k=sc.top_k,
                                 min_degree=sc.min_degree, max_degree=sc.max_degree,
                                 layers=tuple(sc.layers) if sc.layers else None))


def _optimizers(config):
  o = config.optim
  return (steps.adam(o.g_lr, o.b1, o.b2, o.grad_clip), steps.adam(o.d_lr, o.b1, o.b2, o.grad_clip))


def _masked_batches(config):
  """Batches of {"image", "mask"} (the paper's training pairs) from ``config.data``."""
  def batches(start_step: int):
    return data_pipeline.make_train_iterator(
        config.data, image_size=config.image_size, global_batch_size=config.train.batch_size,
        seed=config.seed, start_step=start_step, verbose=jax.process_index() == 0)
  return batches


def _describe(use_critic: bool):
  def describe(state) -> str:
    text = f"trained network: {parameter_count(state.network[0]):,} parameters"
    if use_critic:
      text += f"; critic {parameter_count(state.d_params):,}"
    return text
  return describe


def warm_started(init, config, stage: str):
  """``init`` whose trained network starts from ``config.pretrained.init_from`` (a DiFAI run's
  workdir or a short name such as ``toy-difai``), this stage's latest weights, instead of random
  ones; the optimizer and the critic start fresh. Unset (""): ``init`` itself. Only a new run
  calls ``init``: a resumed one restores its own checkpoint."""
  source = config.pretrained.get("init_from", "")
  if not source:
    return init
  stage_dir = checkpoints.find_stage_dir(pretrained.resolve(source), stage)
  params, collections = checkpoints.load_stage_params(stage_dir)

  @functools.wraps(init)
  def warm(rng):
    state = init(rng)
    fresh = jax.tree.map(lambda x: (x.shape, x.dtype), state.network)
    given = jax.tree.map(lambda x: (x.shape, x.dtype), (params, collections))
    if fresh != given:
      raise ValueError(f"config.pretrained.init_from={source!r}: its '{stage}' network "
                       f"({stage_dir}) does not have this config's shapes; init_from needs the "
                       "same architecture")
    ema = None if state.ema_params is None else params
    return state.with_network(params, collections).replace(ema_params=ema)
  return warm


def build_coarse(config, workdir: str, previous) -> Stage:
  del workdir, previous
  size = config.image_size
  coarse = coarse_lib.from_config(config.coarse)
  use_critic = bool(config.coarse.lambda_adv)
  critic = critic_lib.from_config(config.critic) if use_critic else None
  g_tx, d_tx = _optimizers(config)
  image_shape = (1, size, size, 3)
  init = functools.partial(steps.init_state, coarse,
                           (jnp.zeros(image_shape), jnp.ones(image_shape[:3] + (1,))), critic,
                           image_shape, g_tx, d_tx, use_ema=bool(config.train.ema_decay))
  init = warm_started(init, config, "coarse")
  step = functools.partial(steps.coarse_train_step, coarse=coarse, critic=critic, g_tx=g_tx,
                           d_tx=d_tx, cfg=step_config(config))

  def preview(params, collections, frozen, batch):
    del collections, frozen
    i_masked = pipeline.masked_image(batch["image"], batch["mask"])
    completed = pipeline.coarse_completion(coarse, {"params": params}, i_masked, batch["mask"])
    return [i_masked, completed, batch["image"]]

  return Stage(name="coarse", architecture=checkpoints.architecture(config, "coarse"),
               init=init, step=step, batches=_masked_batches(config), preview=preview,
               log_prefixes=("coarse/",), describe=_describe(use_critic))


def _difai_frozen(config, workdir: str, previous):
  """The frozen variables of the DiFAI stage and the modules they belong to (the coarse net
  built from its own checkpoint's architecture)."""
  coarse_dir = previous.get("coarse")
  if not coarse_dir:
    if not config.pretrained.coarse_workdir:
      raise FileNotFoundError("config.pretrained.coarse_workdir is not set: train the coarse "
                              "stage first (configs/celebahq_coarse.py) and point to its workdir")
    # its coarse stage, or a run holding one (runs/demo, an exported DiFAI, toy-difai)
    coarse_dir = checkpoints.find_stage_dir(
        pretrained.resolve(config.pretrained.coarse_workdir), "coarse")
  frozen = {}
  coarse, frozen["coarse"], _ = checkpoints.load_coarse_net(coarse_dir)
  psp, frozen["psp"] = checkpoints.load_pretrained(config, "psp")
  # L_per / L_style features: VGG-19, or pretrained.feature_net (frozen under the "vgg" key)
  vgg, frozen["vgg"] = checkpoints.load_feature_net(config)
  os.makedirs(workdir, exist_ok=True)
  factors = sefa_lib.cached(os.path.join(workdir, "sefa.npz"),
                            frozen["psp"]["params"]["decoder"], config.sefa.method,
                            config.sefa.factor_layers)
  frozen["sefa"] = factors.directions
  logging.info("SeFa (%s) top eigenvalues: %s", factors.method,
               np.round(np.asarray(factors.values[:5]), 3))
  return frozen, coarse, psp, vgg


def difai_step_functions(config, models: pipeline.Models, critic, vgg):
  """(init, step) of the DiFAI stage: ``init(rng) -> GanState`` and the pure
  ``step(state, batch, frozen, rng)`` that the training loop jits (also used by the benchmarks)."""
  size = config.image_size
  g_tx, d_tx = _optimizers(config)
  image_shape = (1, size, size, 3)
  g_inputs = (jnp.zeros(image_shape), jnp.zeros(image_shape), jnp.ones(image_shape[:3] + (1,)))
  init = functools.partial(steps.init_state, models.generator, g_inputs, critic, image_shape,
                           g_tx, d_tx, use_ema=bool(config.train.ema_decay))
  step = functools.partial(steps.difai_train_step, models=models, critic=critic, vgg=vgg,
                           g_tx=g_tx, d_tx=d_tx, cfg=step_config(config))
  return init, step


def build_difai(config, workdir: str, previous) -> Stage:
  size = config.image_size
  generator = sparn_lib.from_config(config.generator)
  critic = critic_lib.from_config(config.critic)
  frozen, coarse, psp, vgg = _difai_frozen(config, workdir, previous)
  models = pipeline.Models(coarse=coarse, psp=psp,
                           generator=generator, image_size=size,
                           psp_decode_size=config.pretrained.get("psp_decode_size", 0))
  cfg = step_config(config)
  init, step = difai_step_functions(config, models, critic, vgg)
  init = warm_started(init, config, "difai")
  alpha = cfg.sefa.num_edits

  def preview(params, collections, frozen, batch):
    n = batch["image"].shape[0]
    # Fixed, evenly spread edits: direction i, degrees alternating in sign.
    components = jnp.broadcast_to(jnp.arange(alpha, dtype=jnp.int32), (n, alpha))
    degrees = jnp.broadcast_to(
        cfg.sefa.max_degree * jnp.where(jnp.arange(alpha) % 2 == 0, 1.0, -1.0), (n, alpha))
    variables = {**frozen, "generator": {"params": params, **collections}}
    out = pipeline.inpaint(models, variables, batch["image"], batch["mask"], components,
                           degrees, cfg.sefa.layers)
    return ([out["i_masked"], out["i_coarse"], out["i_style"][0]] + list(out["completions"])
            + [batch["image"]])

  return Stage(name="difai", architecture=checkpoints.architecture(config, "difai"),
               init=init, step=step, batches=_masked_batches(config), frozen=frozen,
               preview=preview, log_prefixes=("g/",), describe=_describe(True),
               provenance=checkpoints.psp_provenance(
                   config.pretrained.psp or f"random (seed {config.seed})", frozen["psp"]))


# Both stages read the sections of configs/celebahq.py (the paper's values, each with its
# reason), which is where their defaults live; a DiFAI run is exported as a whole
# (difai_jax.training.export.export_inference_run).
COARSE = StageSpec(name="coarse", build=build_coarse)
DIFAI = StageSpec(name="difai", build=build_difai)
