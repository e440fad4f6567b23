"""The two train states (:class:`TrainState`: one trained network; :class:`GanState`: a
generator and its critic), the pure update functions of the ``coarse`` and ``difai`` stages (the
other stages' steps live in their stage modules), and the helpers every stage shares.

Stage ``coarse``: the coarse net (the paper's customised MLGN) on (I_masked, mask) with its
multi-scale hole-weighted L1 (``losses.coarse_loss``), plus a WGAN-GP critic when
``coarse.lambda_adv > 0``.

Stage ``difai``: the SPARN generator G and the spectral-norm critic D with frozen coarse net,
pSp, StyleGAN2 and VGG-19 (paper eq. 1-11). One step = ``n_critic`` critic updates
(:func:`critic_update`, eq. 10) then one generator update (:func:`generator_update`, eq. 6-9, 11),
all on the same batch and the same frozen style conditions.

Every function here is pure: ``(state, batch, frozen variables, rng) -> (state, metrics)``;
the training loop jits them once over the device mesh.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from difai_jax import losses
from difai_jax import pipeline
from difai_jax.models import coarse as coarse_lib
from difai_jax.models import critic as critic_lib

PyTree = Any


@flax.struct.dataclass
class TrainState:
  """Everything a step changes in a stage that trains one network (the recognizer, the pSp
  encoder, the coarse net without a critic). Frozen networks are never part of it: they reach
  the step through ``Stage.frozen``."""
  step: jax.Array
  params: PyTree
  collections: PyTree        # the network's other variables, e.g. {"batch_stats": ...}
  opt_state: PyTree
  ema_params: PyTree = None  # EMA of params (same tree), or None when disabled
  aux: PyTree = None         # a stage's other running state

  @property
  def network(self) -> tuple[PyTree, PyTree]:
    """(params, collections) of the trained network."""
    return self.params, self.collections

  def with_network(self, params: PyTree, collections: PyTree) -> "TrainState":
    return self.replace(params=params, collections=collections)


@flax.struct.dataclass
class GanState:
  """Everything a step changes in a stage that trains a generator against a critic (StyleGAN2,
  DiFAI, the coarse net with ``coarse.lambda_adv > 0``): ``g_*`` the generator (the one exported),
  ``d_*`` the critic."""
  step: jax.Array
  g_params: PyTree
  g_collections: PyTree      # e.g. {"batch_stats": ...} for norm='spade'/'batch'
  g_opt_state: PyTree
  ema_params: PyTree         # EMA of g_params (same tree), or None when disabled
  d_params: PyTree
  d_collections: PyTree      # {"spectral": ...}
  d_opt_state: PyTree
  aux: PyTree = None         # a stage's other running state (e.g. StyleGAN2's path-length mean)

  @property
  def network(self) -> tuple[PyTree, PyTree]:
    """(params, collections) of the trained generator."""
    return self.g_params, self.g_collections

  def with_network(self, params: PyTree, collections: PyTree) -> "GanState":
    return self.replace(g_params=params, g_collections=collections)


# Checkpoints written before the two state types held every stage's state in GanState's fields
# (empty critic fields for one-network stages): their keys for TrainState's fields.
LEGACY_KEYS = {"step": "step", "params": "g_params", "collections": "g_collections",
               "opt_state": "g_opt_state", "ema_params": "ema_params", "aux": "aux"}


@dataclasses.dataclass(frozen=True)
class StepConfig:
  """Static (hashable) settings of the step functions, taken from the config once."""
  lambdas: tuple[tuple[str, float], ...]
  lambda_gp: float
  n_critic: int
  ema_decay: float
  ms_ssim_weights: tuple[float, ...]
  coarse_loss_kwargs: tuple[tuple[str, Any], ...] = ()
  # What the critic scores (eq. 9-10 write D(I_out)): "raw" generator outputs, or the
  # "composite" I_masked + hole * I_out (a named non-paper option).
  critic_input: str = "raw"
  # Normalisation of the hole / valid L1 terms ("image": the partial-convolution loss's).
  l1_normalization: str = "image"
  sefa: pipeline.SefaSampling = pipeline.SefaSampling()

  def __post_init__(self):
    if self.critic_input not in ("raw", "composite"):
      raise ValueError(f"critic.input must be 'raw' or 'composite', got {self.critic_input!r}")


def ema_update(ema: PyTree, params: PyTree, decay: float) -> PyTree:
  """``decay * ema + (1 - decay) * params``, leaf by leaf: the EMA of trained weights."""
  return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema, params)


def prng_key(seed: int) -> jax.Array:
  """The run's PRNG keys: XLA's RngBitGenerator ('rbg'), which compiles several times faster
  than threefry (initialising the networks took 10-25 s of compile per model on CPU with
  threefry, under 2 s with rbg) and is fast on TPU."""
  return jax.random.key(seed, impl="rbg")


def adam(lr: float, b1: float, b2: float, grad_clip: float = 0.0) -> optax.GradientTransformation:
  tx = optax.adam(lr, b1=b1, b2=b2)
  return optax.chain(optax.clip_by_global_norm(grad_clip), tx) if grad_clip else tx


def _split_vars(variables: Mapping) -> tuple[PyTree, dict]:
  variables = dict(variables)
  params = variables.pop("params")
  return params, variables


def init_state(generator: nn.Module, generator_inputs: tuple, critic: nn.Module | None,
               image_shape: tuple[int, ...], g_tx, d_tx, rng: jax.Array,
               use_ema: bool) -> TrainState | GanState:
  """Initialises parameters and optimizer states (call under jit with out_shardings): a
  :class:`GanState` with a critic, a :class:`TrainState` without one."""
  k_g, k_d = jax.random.split(rng)
  g_params, g_collections = _split_vars(generator.init(k_g, *generator_inputs))
  ema = jax.tree.map(jnp.copy, g_params) if use_ema else None
  if critic is None:
    return TrainState(step=jnp.zeros((), jnp.int32), params=g_params, collections=g_collections,
                      opt_state=g_tx.init(g_params), ema_params=ema)
  d_params, d_collections = _split_vars(
      critic.init(k_d, jnp.zeros(image_shape, jnp.float32), train=False))
  return GanState(
      step=jnp.zeros((), jnp.int32), g_params=g_params, g_collections=g_collections,
      g_opt_state=g_tx.init(g_params), ema_params=ema,
      d_params=d_params, d_collections=d_collections, d_opt_state=d_tx.init(d_params))


def _critic_fn(critic: nn.Module, params, collections) -> Callable[[jax.Array], jax.Array]:
  return lambda x: critic.apply({"params": params, **collections}, x, train=False)


def critic_update(state: GanState, real: jax.Array, fake: jax.Array, rng: jax.Array, *,
                  critic: nn.Module, d_tx, lambda_gp: float) -> tuple[GanState, dict]:
  """One WGAN-GP critic step (eq. 10) on real (N, ...) and fake (K, N, ...) images.

  The power-iteration state of the spectral norm advances once per update (on the real batch),
  then the loss is evaluated with the updated estimate.
  """
  _, updated = critic.apply({"params": state.d_params, **state.d_collections}, real, train=True,
                            mutable=[critic_lib.SPECTRAL_COLLECTION])
  collections = {**state.d_collections, **updated}

  def loss_fn(params):
    return losses.critic_loss(_critic_fn(critic, params, collections), real, fake, rng,
                              lambda_gp=lambda_gp)

  (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.d_params)
  updates, d_opt_state = d_tx.update(grads, state.d_opt_state, state.d_params)
  state = state.replace(d_params=optax.apply_updates(state.d_params, updates),
                        d_collections=collections, d_opt_state=d_opt_state)
  return state, {"critic/loss": loss, **{f"critic/{k}": v for k, v in terms.items()}}


def apply_grads(params, opt_state, ema, grads, tx, ema_decay: float):
  """One optimizer update of a trained network: (params, opt_state, ema) after ``grads``."""
  updates, opt_state = tx.update(grads, opt_state, params)
  params = optax.apply_updates(params, updates)
  if ema is not None:
    ema = ema_update(ema, params, ema_decay)
  return params, opt_state, ema


def _apply_generator_grads(state: GanState, grads, g_tx, new_collections,
                           ema_decay: float) -> GanState:
  g_params, g_opt_state, ema = apply_grads(state.g_params, state.g_opt_state, state.ema_params,
                                           grads, g_tx, ema_decay)
  return state.replace(g_params=g_params, g_opt_state=g_opt_state, ema_params=ema,
                       g_collections={**state.g_collections, **new_collections})


def critic_input(cfg: StepConfig, i_masked: jax.Array, i_out: jax.Array,
                 mask: jax.Array) -> jax.Array:
  """What the critic scores: the raw outputs I_out (eq. 9-10, the default) or the composite."""
  if cfg.critic_input == "composite":
    return pipeline.composite(i_masked, i_out, mask)
  return i_out


def generator_update(state: GanState, batch: Mapping[str, jax.Array],
                     cond: Mapping[str, jax.Array], *, generator: nn.Module,
                     critic: nn.Module, vgg: nn.Module, vgg_variables, g_tx,
                     cfg: StepConfig) -> tuple[GanState, dict, jax.Array]:
  """One generator step on eq. 11 = sum of lambda * (hole, valid, perceptual, style, MS-SSIM,
  adversarial). Returns the new state, the loss terms and the raw outputs (K, N, H, W, 3)."""
  image, mask = batch["image"], batch["mask"]
  mutable = list(state.g_collections) or False
  lambdas = dict(cfg.lambdas)
  feature_fn = lambda x: vgg.apply(vgg_variables, x)
  # VGG features of the fixed targets (I_style_j and I_gt) once, outside the gradient.
  k = cond["i_style"].shape[0]
  targets = losses.stacked_features(
      feature_fn, jnp.concatenate([cond["i_style"], image[None]], axis=0))
  feats_style = {t: f[:k] for t, f in targets.items()}
  feats_gt = {t: f[k] for t, f in targets.items()}
  critic_fn = _critic_fn(critic, state.d_params, state.d_collections)

  def loss_fn(params):
    variables = {"params": params, **state.g_collections}
    result = pipeline.generate(generator, variables, cond["i_masked"], cond["i_style_prime"],
                               mask, train=True, mutable=mutable)
    i_out, updated = result if mutable else (result, {})
    feats_out = losses.stacked_features(feature_fn, i_out)
    terms = {
        "hole": losses.hole_l1(i_out[0], image, mask, cfg.l1_normalization),
        "valid": losses.valid_l1(i_out[0], image, mask, cfg.l1_normalization),
        "perceptual": losses.perceptual_loss(feats_out, feats_style, feats_gt, mask),
        "style": losses.style_loss(feats_out, feats_style, feats_gt, mask),
    }
    if lambdas.get("ms_ssim", 0.0):
      terms["ms_ssim"] = losses.ms_ssim_loss(i_out[0], image, cfg.ms_ssim_weights)
    if lambdas.get("adversarial", 0.0):
      terms["adversarial"] = losses.generator_adversarial_loss(
          critic_fn, critic_input(cfg, cond["i_masked"], i_out, mask))
    total, terms = losses.total_generator_loss(terms, {t: lambdas[t] for t in terms})
    return total, (terms, i_out, updated)

  (_, (terms, i_out, updated)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.g_params)
  state = _apply_generator_grads(state, grads, g_tx, dict(updated), cfg.ema_decay)
  return state, {f"g/{k}": v for k, v in terms.items()}, i_out


def difai_train_step(state: GanState, batch: Mapping[str, jax.Array], frozen: Mapping,
                     rng: jax.Array, *, models: pipeline.Models, critic: nn.Module,
                     vgg: nn.Module, g_tx, d_tx, cfg: StepConfig):
  """A full DiFAI step: frozen conditions, ``n_critic`` critic updates, one generator update.

  ``frozen``: ``{"coarse", "psp", "sefa", "vgg"}`` variables. ``rng`` is this step's key (the
  caller folds the step number into the run's key, so a resumed run draws the same numbers).
  """
  k_sefa, k_critic = jax.random.split(rng)
  image, mask = batch["image"], batch["mask"]
  components, degrees = pipeline.sample_sefa_edits(k_sefa, image.shape[0], cfg.sefa,
                                                   frozen["sefa"].shape[0])
  cond = pipeline.style_conditions(models, frozen, image, mask, components, degrees,
                                   cfg.sefa.layers)
  g_vars = {"params": state.g_params, **state.g_collections}
  metrics = {}
  if cfg.n_critic and dict(cfg.lambdas).get("adversarial", 0.0):
    # The critic's fakes in the generator update's mode (train=True: batch statistics for the
    # BatchNorm ablations too); their collection updates are dropped, the generator update's kept.
    mutable = list(state.g_collections) or False
    result = pipeline.generate(models.generator, g_vars, cond["i_masked"],
                               cond["i_style_prime"], mask, train=True, mutable=mutable)
    i_out = result[0] if mutable else result
    fake = critic_input(cfg, cond["i_masked"], jax.lax.stop_gradient(i_out), mask)
    for key in jax.random.split(k_critic, cfg.n_critic):
      state, metrics = critic_update(state, image, fake, key, critic=critic, d_tx=d_tx,
                                     lambda_gp=cfg.lambda_gp)
  state, g_metrics, _ = generator_update(state, batch, cond, generator=models.generator,
                                         critic=critic, vgg=vgg, vgg_variables=frozen["vgg"],
                                         g_tx=g_tx, cfg=cfg)
  metrics.update(g_metrics)
  return state.replace(step=state.step + 1), metrics


def coarse_train_step(state: TrainState | GanState, batch: Mapping[str, jax.Array],
                      frozen: Mapping, rng: jax.Array, *, coarse: coarse_lib.CoarseNet,
                      critic: nn.Module, g_tx, d_tx, cfg: StepConfig):
  """A coarse-stage step: critic updates when lambda_adv > 0 (a :class:`GanState`), one
  coarse-net update (a :class:`TrainState` without a critic)."""
  del frozen
  image, mask = batch["image"], batch["mask"]
  i_masked = pipeline.masked_image(image, mask)
  loss_kwargs = dict(cfg.coarse_loss_kwargs)
  lambda_adv = loss_kwargs.get("lambda_adv", 0.0)
  params = state.network[0]
  metrics, critic_fn = {}, None
  if lambda_adv:
    outputs = coarse.apply({"params": params}, i_masked, mask)
    fake = pipeline.composite(i_masked, outputs.full, mask)
    for key in jax.random.split(rng, cfg.n_critic):
      state, metrics = critic_update(state, image, fake, key, critic=critic, d_tx=d_tx,
                                     lambda_gp=cfg.lambda_gp)
    critic_fn = _critic_fn(critic, state.d_params, state.d_collections)

  def loss_fn(params):
    outputs = coarse.apply({"params": params}, i_masked, mask)
    scores = None
    if lambda_adv:
      scores = critic_fn(pipeline.composite(i_masked, outputs.full, mask))
    return losses.coarse_loss(outputs, image, mask, fake_scores=scores, **loss_kwargs)

  loss, grads = jax.value_and_grad(loss_fn)(params)
  if lambda_adv:
    state = _apply_generator_grads(state, grads, g_tx, {}, cfg.ema_decay)
  else:
    params, opt_state, ema = apply_grads(params, state.opt_state, state.ema_params, grads, g_tx,
                                         cfg.ema_decay)
    state = state.replace(params=params, opt_state=opt_state, ema_params=ema)
  metrics["coarse/loss"] = loss
  return state.replace(step=state.step + 1), metrics
