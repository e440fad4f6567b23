"""Stage ``stylegan2``: an unconditional StyleGAN2 trained with rosinality's recipe.

Re-expresses the training loop of rosinality/stylegan2-pytorch (``train.py``) as one pure step:

- losses: the non-saturating logistic loss for both networks, ``softplus(-D(x))`` on reals and
  ``softplus(D(G(z)))`` on fakes for D, ``softplus(-D(G(z)))`` for G;
- lazy regularisation (Karras et al. 2020, appendix B): R1 on reals every ``d_reg_every``
  steps, weighted ``r1 / 2 * d_reg_every``; path-length regularisation every ``g_reg_every``
  steps on a ``path_batch_shrink``-times smaller batch, weighted ``path_regularize *
  g_reg_every`` around a running mean of path lengths (decay 0.01); the step's static
  :class:`Phase` says which run (the training loop compiles one step per phase);
- Adam with the lazy-regularisation corrections: ``lr * c`` and betas ``(0 ** c, 0.99 ** c)``
  with ``c = reg_every / (reg_every + 1)``;
- style mixing with probability ``mixing`` (one crossover layer per batch), fresh noise per
  sample, and an EMA generator with a half-life of ``ema_kimg`` thousand images;
- optional differentiable augmentation (DiffAugment, Zhao et al. 2020: colour, translation,
  cutout) of every image D sees, for small data sets;
- optional feature critic (``feature_d``; not rosinality's, after Projected GAN, Sauer et al.
  2021): a small MLP on a frozen toy recognizer's embedding of the images, trained with the same
  logistic loss beside D (R1 on the embedding every step) and added to G's loss with weight
  ``feature_d_weight``. The recognizer names a face's attributes, so this critic sees at once
  what a generator draws too rarely (beards, moustaches). Its weights and Adam state live in
  ``GanState.aux``; an export leaves it out (a continuation starts a fresh one).
- optional attribute-frequency term (``feature_d_attributes``; not rosinality's): the same
  recognizer's softmax over each attribute, averaged over G's samples, is pulled towards its
  average over ``feature_d_attribute_faces`` training faces: moment matching on the
  recognizer's predictions (feature matching, Salimans et al. 2016, on the classes a face
  shows), aimed at frequencies the generator gets wrong. The gap is read from a running mean of
  the samples' softmax (``attribute_decay``, in ``GanState.aux``), and G descends
  ``sum 2 (running - target) * batch mean``: the gradient of the squared gap without the
  batch-variance term a squared batch mean would add (that term rewards ambiguous faces).
  ``feature_d_attribute_temperature`` < 1 matches sharpened softmaxes instead, closer to the
  frequencies of predicted labels (averaged softmaxes can agree while the labels do not); 0
  matches the label frequencies themselves: the running means and targets count one-hot
  predicted labels, and G descends the gap along the batch's mean softmax (temperature 1), so
  the pull lasts until the labels agree. Needs ``feature_d``. With
  ``feature_d_attribute_on_ema`` the term is read on extra samples of the EMA generator and its
  gradient there is added to G's: G's own frequencies swing by 10-30 points within a few
  hundred steps (measured on the toy faces), while the EMA generator, the exported one, moves
  slowly, so a term on G's samples hardly steers it.
  ``feature_d_attribute_balanced`` weighs each class's squared gap by ``1 / (C p)`` (Pearson's
  chi-square over the class count C, p the target frequency): on the squared gap a 2-point
  shortfall of a 5 % class pulls no harder than 2 points of a 50 % one.

The trained generator (EMA weights) is exported with :func:`export` as a converted directory
that ``difai_jax.pretrained.load`` reads (kind ``stylegan2``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from configs import stage_defaults
from difai_jax import pretrained
from difai_jax.data import image_io
from difai_jax.data import loader as data_pipeline
from difai_jax.data import sources
from difai_jax.models import stylegan2
from difai_jax.nn import parameter_count
from difai_jax.training import steps
from difai_jax.training.stage import Stage
from difai_jax.training.stage import StageSpec

PyTree = Any


@dataclasses.dataclass(frozen=True)
class Recipe:
  """Static settings of the StyleGAN2 step (rosinality's ``train.py`` arguments)."""
  batch_size: int
  r1: float = 10.0
  d_reg_every: int = 16
  path_regularize: float = 2.0
  g_reg_every: int = 4
  path_batch_shrink: int = 2
  mixing: float = 0.9
  ema_decay: float = 0.999
  augment: tuple[str, ...] = ()
  feature_weight: float = 1.0
  feature_r1: float = 1.0
  attribute_weight: float = 0.0
  attribute_decay: float = 0.98
  attribute_temperature: float = 1.0
  attribute_on_ema: bool = False
  attribute_balanced: bool = False


def generator_config(c: ml_collections.ConfigDict) -> dict:
  """The architecture fields of ``config.stylegan2`` as the converted ``config.json`` has them."""
  return {"size": int(c.size), "style_dim": int(c.style_dim), "n_mlp": int(c.n_mlp),
          "channels": list(c.channels), "lr_mlp": float(c.lr_mlp)}


def build_networks(c: ml_collections.ConfigDict):
  generator = stylegan2.from_config(generator_config(c))
  discriminator = stylegan2.Discriminator(size=int(c.size), channels=tuple(c.d_channels))
  return generator, discriminator


def lazy_adam(lr: float, reg_every: int) -> optax.GradientTransformation:
  """Adam with rosinality's lazy-regularisation corrections (b1 = 0, b2 = 0.99)."""
  c = reg_every / (reg_every + 1) if reg_every else 1.0
  return optax.adam(lr * c, b1=0.0 ** c, b2=0.99 ** c)


def ema_decay(batch_size: int, ema_kimg: float) -> float:
  """rosinality's ``0.5 ** (32 / (10 * 1000))`` generalised: half-life of ``ema_kimg`` kimg."""
  return 0.5 ** (batch_size / (ema_kimg * 1000.0))


# ----------------------------------------------------------------------------------------------
# DiffAugment (Zhao et al. 2020), NHWC, differentiable in the images
# ----------------------------------------------------------------------------------------------

def diff_augment(images: jax.Array, rng: jax.Array, policy: tuple[str, ...]) -> jax.Array:
  """Applies the named augmentations ('color', 'translation', 'cutout') with per-sample draws."""
  n, h, w, _ = images.shape
  keys = jax.random.split(rng, 6)
  x = images
  if "color" in policy:
    x = x + (jax.random.uniform(keys[0], (n, 1, 1, 1)) - 0.5)                     # brightness
    mean = x.mean(axis=-1, keepdims=True)
    x = (x - mean) * (jax.random.uniform(keys[1], (n, 1, 1, 1)) * 2) + mean        # saturation
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    x = (x - mean) * (jax.random.uniform(keys[2], (n, 1, 1, 1)) + 0.5) + mean      # contrast
  if "translation" in policy:
    # Shift by up to 1/8 of the size with zero fill, as a gather on padded images.
    sh, sw = h // 8, w // 8
    ty = jax.random.randint(keys[3], (n,), -sh, sh + 1)
    tx = jax.random.randint(jax.random.fold_in(keys[3], 1), (n,), -sw, sw + 1)
    padded = jnp.pad(x, ((0, 0), (sh, sh), (sw, sw), (0, 0)))
    x = jax.vmap(lambda im, dy, dx: jax.lax.dynamic_slice(
        im, (sh - dy, sw - dx, 0), (h, w, im.shape[-1])))(padded, ty, tx)
  if "cutout" in policy:
    ch, cw = h // 2, w // 2
    cy = jax.random.randint(keys[4], (n, 1, 1), 0, h)
    cx = jax.random.randint(keys[5], (n, 1, 1), 0, w)
    yy, xx = jnp.arange(h)[None, :, None], jnp.arange(w)[None, None, :]
    inside = (jnp.abs(yy - cy) < ch // 2 + 1) & (jnp.abs(xx - cx) < cw // 2 + 1)
    x = x * (1.0 - inside[..., None].astype(x.dtype))
  return x


# ----------------------------------------------------------------------------------------------
# The feature critic
# ----------------------------------------------------------------------------------------------

class FeatureHead(nn.Module):
  """(N, D) embeddings -> (N,) scores: two leaky-ReLU layers of ``width`` and a linear score."""
  width: int = 256

  @nn.compact
  def __call__(self, embedding: jax.Array) -> jax.Array:
    x = embedding
    for i in range(2):
      x = nn.leaky_relu(nn.Dense(self.width, name=f"dense{i}")(x), 0.2)
    return nn.Dense(1, name="score")(x)[:, 0]


@dataclasses.dataclass(frozen=True)
class FeatureCritic:
  """The frozen recognizer (its variables come in ``frozen["feature_net"]``), the trained head
  and the head's optimizer."""
  recognizer: Any
  head: FeatureHead
  tx: optax.GradientTransformation

  def embed(self, frozen, images):
    return self.recognizer.apply(frozen["feature_net"], images)["embedding"]

  def recognize(self, frozen, images):
    """``{"embedding": (N, D), "logits": {name: (N, C)}}`` of images."""
    return self.recognizer.apply(frozen["feature_net"], images)

  def score(self, head_params, embedding):
    return self.head.apply({"params": head_params}, embedding)


def class_probabilities(logits: jax.Array, temperature: float = 1.0) -> jax.Array:
  """(..., C): the softmax of ``logits / temperature``; at temperature 0 the one-hot predicted
  label (no gradient)."""
  if temperature == 0:
    return jax.nn.one_hot(jnp.argmax(logits, axis=-1), logits.shape[-1])
  return jax.nn.softmax(logits.astype(jnp.float32) / temperature, axis=-1)


def mean_softmax(logits: dict, temperature: float = 1.0) -> dict:
  """``{name: (C,)}``: each head's :func:`class_probabilities` averaged over the batch. A
  temperature below 1 sharpens the softmax towards the one-hot argmax, so that the means
  approach the frequencies of the predicted labels (what a judge counts); 0 gives those
  frequencies."""
  return {name: jnp.mean(class_probabilities(l, temperature), axis=0)
          for name, l in logits.items()}


def balanced_class_weights(target: dict, floor: float = 0.01) -> dict:
  """``{name: (C,)}``: ``1 / (C max(p, floor))`` per class, so that the weighted squared gap is
  Pearson's chi-square divided by the class count: a gap of one point in a class of 5 % pulls as
  hard as ten points in a class of 50 %, and a uniform target gets weight 1 everywhere."""
  return {name: 1.0 / (p.shape[-1] * jnp.maximum(p, floor)) for name, p in target.items()}


def attribute_gap(means: dict, target: dict, class_weights: dict | None = None) -> jax.Array:
  """Sum over attributes and classes of (mean frequency - target frequency)^2, each term times
  its class weight when ``class_weights`` is given."""
  w = class_weights or {}
  return sum(jnp.sum(w.get(name, 1.0) * jnp.square(means[name] - p))
             for name, p in target.items())


def attribute_surrogate(batch_means: dict, running: dict, target: dict,
                        class_weights: dict | None = None) -> jax.Array:
  """``sum 2 w (running - target) * batch_means``: its gradient in the batch means is the
  (weighted) squared gap's gradient at the running means (which carry no gradient)."""
  w = class_weights or {}
  return sum(jnp.sum(2.0 * w.get(name, 1.0) * jax.lax.stop_gradient(running[name] - p)
                     * batch_means[name]) for name, p in target.items())


def attribute_frequencies(recognizer, variables, data_config, image_size: int,
                          num_images: int, batch_size: int = 250,
                          temperature: float = 1.0) -> dict:
  """The recognizer's softmax (of logits / ``temperature``; at 0 its one-hot predicted label)
  averaged over the first ``num_images`` training faces: ``{attribute: (classes,) float32}``,
  the targets of the attribute-frequency term."""
  source = sources.make_source(data_config, "train", image_size, verbose=False)
  n = min(int(num_images), len(source))
  if n < 1:
    raise ValueError("stylegan2.feature_d_attribute_faces must be >= 1")
  apply = jax.jit(lambda v, x: {k: class_probabilities(l, temperature)
                                for k, l in recognizer.apply(v, x)["logits"].items()})
  sums = None
  for start in range(0, n, batch_size):
    images = np.stack([image_io.uint8_to_float(source[i])
                       for i in range(start, min(start + batch_size, n))])
    probs = apply(variables, jnp.asarray(images))
    batch_sums = {k: np.asarray(p, np.float64).sum(axis=0) for k, p in probs.items()}
    sums = batch_sums if sums is None else {k: sums[k] + batch_sums[k] for k in sums}
  return {k: jnp.asarray(v / n, jnp.float32) for k, v in sums.items()}


def feature_critic_update(aux, critic: FeatureCritic, frozen, real, fake, recipe: Recipe):
  """One step of the feature critic on (real, fake) images: ``(aux, metrics)``."""
  e_real = jax.lax.stop_gradient(critic.embed(frozen, real))
  e_fake = jax.lax.stop_gradient(critic.embed(frozen, fake))

  def loss_fn(p):
    real_pred = critic.score(p, e_real)
    loss = (jnp.mean(jax.nn.softplus(-real_pred))
            + jnp.mean(jax.nn.softplus(critic.score(p, e_fake))))
    grad = jax.grad(lambda e: critic.score(p, e).sum())(e_real)
    r1 = jnp.mean(jnp.sum(jnp.square(grad), axis=1))
    return loss + recipe.feature_r1 / 2 * r1, (loss, real_pred.mean())

  (_, (loss, real_score)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      aux["feature_d"])
  updates, opt = critic.tx.update(grads, aux["feature_d_opt"], aux["feature_d"])
  aux = {**aux, "feature_d": optax.apply_updates(aux["feature_d"], updates),
         "feature_d_opt": opt}
  return aux, {"fd/loss": loss, "fd/real_score": real_score}


# ----------------------------------------------------------------------------------------------
# The step
# ----------------------------------------------------------------------------------------------

def _mixed_latents(generator, g_vars, rng, n, mixing):
  """W+ (n, n_latent, D) from one or two z with probability ``mixing`` (rosinality's
  ``mixing_noise`` + crossover at a random layer, one per batch)."""
  k_z, k_mix, k_idx = jax.random.split(rng, 3)
  z = jax.random.normal(k_z, (2, n, generator.style_dim))
  w = generator.apply(g_vars, z.reshape(2 * n, -1), method="mapping").reshape(2, n, -1)
  n_latent = generator.n_latent
  crossover = jnp.where(jax.random.uniform(k_mix) < mixing,
                        jax.random.randint(k_idx, (), 1, n_latent), n_latent)
  first = (jnp.arange(n_latent) < crossover)[None, :, None]
  return jnp.where(first, w[0][:, None], w[1][:, None])


def _synthesize(generator, g_vars, latents, rng):
  return generator.apply(g_vars, [latents], input_is_latent=True, randomize_noise=True,
                         rngs={"noise": rng})


def _augment(recipe: Recipe, images, rng):
  return diff_augment(images, rng, recipe.augment) if recipe.augment else images


def d_loss_fn(d_params, discriminator, real, fake, rng, recipe: Recipe):
  k1, k2 = jax.random.split(rng)
  real_pred = discriminator.apply({"params": d_params}, _augment(recipe, real, k1))
  fake_pred = discriminator.apply({"params": d_params}, _augment(recipe, fake, k2))
  loss = jnp.mean(jax.nn.softplus(-real_pred)) + jnp.mean(jax.nn.softplus(fake_pred))
  return loss, {"d/loss": loss, "d/real_score": real_pred.mean(),
                "d/fake_score": fake_pred.mean()}


def r1_penalty(d_params, discriminator, real, rng, recipe: Recipe):
  """Mean over the batch of |grad_x D(x)|^2 on (augmented) reals."""
  def total_score(x):
    return discriminator.apply({"params": d_params}, _augment(recipe, x, rng)).sum()
  grad = jax.grad(total_score)(real)
  return jnp.mean(jnp.sum(jnp.square(grad), axis=(1, 2, 3)))


def path_lengths(generator, g_vars, latents, rng):
  """|J_w^T y| per sample for y ~ N(0, 1) / sqrt(H W) (Karras et al. 2020, eq. 4)."""
  k_noise, k_y = jax.random.split(rng)

  def projected(w):
    image = _synthesize(generator, g_vars, w, k_noise)
    y = jax.random.normal(k_y, image.shape) / math.sqrt(image.shape[1] * image.shape[2])
    return jnp.sum(image * y)

  grad = jax.grad(projected)(latents)                         # (n, n_latent, D)
  return jnp.sqrt(jnp.mean(jnp.sum(jnp.square(grad), axis=2), axis=1))


@dataclasses.dataclass(frozen=True)
class Phase:
  """Which lazy regularisers a step runs (static: one compiled step per phase)."""
  r1: bool
  path: bool


def step_phase(recipe: Recipe, step: int) -> Phase:
  """The phase of step ``step``: R1 every ``d_reg_every`` steps, path length every
  ``g_reg_every`` (rosinality's ``i % d_reg_every == 0``)."""
  every = lambda n: bool(n) and step % n == 0
  return Phase(r1=bool(recipe.r1) and every(recipe.d_reg_every),
               path=bool(recipe.path_regularize) and every(recipe.g_reg_every))


def _lazy(static: bool | None, traced_flag, update, skip, args):
  """``update(args)`` when the phase says so; with no phase (``static`` None) chosen at run time
  by ``traced_flag`` (``lax.cond``: one compiled step, but XLA:CPU runs the convolutions inside a
  conditional branch an order of magnitude slower)."""
  if static is None:
    return jax.lax.cond(traced_flag, update, skip, args)
  return update(args) if static else skip(args)


def _d_update(state: steps.GanState, real, keys, *, generator, discriminator, d_tx,
              recipe: Recipe, phase: Phase | None):
  """The discriminator's step (+ lazy R1): ``(d_params, d_opt_state, metrics, fakes)``."""
  g_vars = {"params": state.g_params, **state.g_collections}
  fake = _synthesize(generator, g_vars,
                     _mixed_latents(generator, g_vars, keys[0], real.shape[0], recipe.mixing),
                     keys[1])
  (_, metrics), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(
      state.d_params, discriminator, real, jax.lax.stop_gradient(fake), keys[2], recipe)
  updates, d_opt = d_tx.update(d_grads, state.d_opt_state, state.d_params)
  d_params = optax.apply_updates(state.d_params, updates)

  def r1_update(args):
    d_params, d_opt = args
    penalty, grads = jax.value_and_grad(
        lambda p: recipe.r1 / 2 * r1_penalty(p, discriminator, real, keys[3], recipe)
        * recipe.d_reg_every)(d_params)
    updates, d_opt = d_tx.update(grads, d_opt, d_params)
    return optax.apply_updates(d_params, updates), d_opt, penalty

  def no_r1(args):
    return args[0], args[1], jnp.zeros(())

  if recipe.r1 and recipe.d_reg_every:
    d_params, d_opt, r1 = _lazy(phase and phase.r1, state.step % recipe.d_reg_every == 0,
                                r1_update, no_r1, (d_params, d_opt))
    metrics["d/r1_weighted"] = r1
  return d_params, d_opt, metrics, fake


def _recognizer_terms(fake, critic, frozen, head_params, running, recipe: Recipe):
  """G's feature-critic loss, attribute surrogate and batch-mean softmax (zeros and {} when
  off) on the fakes: one recognizer pass for both."""
  if critic is None:
    return jnp.zeros(()), jnp.zeros(()), {}
  seen = critic.recognize(frozen, fake)
  feature_loss = jnp.mean(jax.nn.softplus(-critic.score(head_params, seen["embedding"])))
  if not recipe.attribute_weight:
    return feature_loss, jnp.zeros(()), {}
  return (feature_loss,) + _attribute_term(seen["logits"], running, frozen, recipe)


def _attribute_frozen(frozen) -> tuple:
  """(targets, class weights or None) of the attribute term."""
  return frozen["attribute_targets"], frozen.get("attribute_class_weights")


def _attribute_term(logits, running, frozen, recipe: Recipe):
  """The attribute surrogate of a batch's logits and the batch means the running mean follows
  (at temperature 0 the predicted labels' frequencies; the gradient flows through the softmax
  at temperature 1)."""
  temperature = recipe.attribute_temperature
  batch_means = mean_softmax(logits, temperature or 1.0)
  surrogate = attribute_surrogate(batch_means, running, *_attribute_frozen(frozen))
  observed = mean_softmax(logits, temperature) if temperature == 0 else batch_means
  return surrogate, jax.lax.stop_gradient(observed)


def _attribute_grads_at_ema(state: steps.GanState, n: int, keys, *, generator, recipe: Recipe,
                            critic, frozen):
  """``attribute_on_ema``: the attribute term's gradient taken at the EMA generator (the one
  exported and sampled) on n samples of it without mixing, to be added to G's own gradient;
  and those samples' batch means (what the running mean then follows)."""
  g_vars = lambda p: {"params": p, **state.g_collections}

  def term(p):
    latents = _mixed_latents(generator, g_vars(p), jax.random.fold_in(keys[4], 1), n, 0.0)
    fake = _synthesize(generator, g_vars(p), latents, jax.random.fold_in(keys[5], 1))
    surrogate, observed = _attribute_term(critic.recognize(frozen, fake)["logits"],
                                          state.aux["attribute_running"], frozen, recipe)
    return recipe.attribute_weight * surrogate, observed

  return jax.grad(term, has_aux=True)(state.ema_params)


def _g_update(state: steps.GanState, d_params, n: int, keys, *, generator, discriminator,
              g_tx, recipe: Recipe, phase: Phase | None, critic=None, frozen=None,
              head_params=None):
  """The generator's step (+ lazy path length) against the updated discriminator (and feature
  critic): ``(g_params, g_opt_state, mean_path_length, attribute running means, metrics)``."""
  g_vars = lambda p: {"params": p, **state.g_collections}
  on_ema = bool(recipe.attribute_weight and recipe.attribute_on_ema)

  def g_loss_fn(g_params):
    latents = _mixed_latents(generator, g_vars(g_params), keys[4], n, recipe.mixing)
    fake = _synthesize(generator, g_vars(g_params), latents, keys[5])
    pred = discriminator.apply({"params": d_params}, _augment(recipe, fake, keys[6]))
    loss = jnp.mean(jax.nn.softplus(-pred))
    feature_loss, attribute_loss, batch_means = _recognizer_terms(
        fake, critic, frozen, head_params, state.aux.get("attribute_running"), recipe)
    total = (loss + recipe.feature_weight * feature_loss
             + (0.0 if on_ema else recipe.attribute_weight) * attribute_loss)
    return total, (loss, feature_loss, batch_means)

  (_, (g_loss, feature_loss, batch_means)), g_grads = jax.value_and_grad(
      g_loss_fn, has_aux=True)(state.g_params)
  if on_ema:
    attribute_grads, batch_means = _attribute_grads_at_ema(
        state, n, keys, generator=generator, recipe=recipe, critic=critic, frozen=frozen)
    g_grads = jax.tree.map(jnp.add, g_grads, attribute_grads)
  updates, g_opt = g_tx.update(g_grads, state.g_opt_state, state.g_params)
  g_params = optax.apply_updates(state.g_params, updates)
  mean_path = state.aux["mean_path_length"]

  def path_update(args):
    g_params, g_opt, mean_path = args
    m = max(n // recipe.path_batch_shrink, 1)

    def penalty_fn(p):
      latents = _mixed_latents(generator, g_vars(p), keys[7], m, recipe.mixing)
      lengths = path_lengths(generator, g_vars(p), latents, jax.random.fold_in(keys[7], 1))
      target = mean_path + 0.01 * (jax.lax.stop_gradient(lengths.mean()) - mean_path)
      penalty = jnp.mean(jnp.square(lengths - target))
      return recipe.path_regularize * recipe.g_reg_every * penalty, (target, lengths.mean())

    (_, (target, mean_len)), grads = jax.value_and_grad(penalty_fn, has_aux=True)(g_params)
    updates, g_opt = g_tx.update(grads, g_opt, g_params)
    return optax.apply_updates(g_params, updates), g_opt, target, mean_len

  no_path = lambda args: args + (jnp.zeros(()),)
  path_len = jnp.zeros(())
  if recipe.path_regularize and recipe.g_reg_every:
    g_params, g_opt, mean_path, path_len = _lazy(
        phase and phase.path, state.step % recipe.g_reg_every == 0, path_update, no_path,
        (g_params, g_opt, mean_path))
  metrics = {"g/loss": g_loss, "g/path_length": path_len, "g/mean_path_length": mean_path}
  if critic is not None:
    metrics["g/feature_loss"] = feature_loss
  running = {}
  if recipe.attribute_weight:
    d = recipe.attribute_decay
    running = jax.tree.map(lambda r, m: d * r + (1.0 - d) * m, state.aux["attribute_running"],
                           batch_means)
    metrics["g/attribute_gap"] = attribute_gap(running, *_attribute_frozen(frozen))
  return g_params, g_opt, mean_path, running, metrics


def train_step(state: steps.GanState, batch, frozen, rng, *, generator, discriminator, g_tx,
               d_tx, recipe: Recipe, phase: Phase | None = None,
               critic: FeatureCritic | None = None):
  """One rosinality iteration: D step (+ lazy R1; + the feature critic's step), G step (+ lazy
  path length), EMA.

  ``phase`` (static) fixes which regularisers run; None decides from ``state.step`` inside the
  compiled step.
  """
  real = batch["image"]
  keys = jax.random.split(rng, 8)
  nets = {"generator": generator, "discriminator": discriminator}
  d_params, d_opt, metrics, fake = _d_update(state, real, keys, d_tx=d_tx, recipe=recipe,
                                             phase=phase, **nets)
  aux = state.aux
  if critic is not None:           # on the fakes D's step drew
    aux, feature_metrics = feature_critic_update(aux, critic, frozen, real, fake, recipe)
    metrics.update(feature_metrics)
  g_params, g_opt, mean_path, running, g_metrics = _g_update(
      state, d_params, real.shape[0], keys, g_tx=g_tx, recipe=recipe, phase=phase,
      critic=critic, frozen=frozen, head_params=aux.get("feature_d"), **nets)
  metrics.update(g_metrics)
  ema = steps.ema_update(state.ema_params, g_params, recipe.ema_decay)
  return state.replace(step=state.step + 1, g_params=g_params, g_opt_state=g_opt,
                       ema_params=ema, d_params=d_params, d_opt_state=d_opt,
                       aux={**aux, "mean_path_length": mean_path, **(
                           {"attribute_running": running} if running else {})}), metrics


def init_state(rng, *, generator, discriminator, g_tx, d_tx,
               critic: FeatureCritic | None = None,
               attribute_targets: dict | None = None) -> steps.GanState:
  k_g, k_d = jax.random.split(rng)
  size = generator.size
  g_vars = dict(generator.init(k_g, [jnp.zeros((1, generator.style_dim))]))
  g_params = g_vars.pop("params")
  d_params = discriminator.init(k_d, jnp.zeros((1, size, size, 3)))["params"]
  aux = {"mean_path_length": jnp.zeros((), jnp.float32)}
  if attribute_targets:   # the running means start at the targets (no gap until samples say)
    aux["attribute_running"] = jax.tree.map(jnp.copy, attribute_targets)
  if critic is not None:
    head = critic.head.init(jax.random.fold_in(rng, 2),
                            jnp.zeros((1, critic.recognizer.feature_dim)))["params"]
    aux.update(feature_d=head, feature_d_opt=critic.tx.init(head))
  return steps.GanState(
      step=jnp.zeros((), jnp.int32), g_params=g_params, g_collections=g_vars,
      g_opt_state=g_tx.init(g_params), ema_params=jax.tree.map(jnp.copy, g_params),
      d_params=d_params, d_collections={}, d_opt_state=d_tx.init(d_params), aux=aux)


def feature_critic(c: ml_collections.ConfigDict):
  """``(FeatureCritic, frozen variables)`` for ``stylegan2.feature_d``, or ``(None, {})``."""
  spec = str(c.get("feature_d", "") or "")
  if not spec:
    return None, {}
  kind = pretrained.read_config(pretrained.resolve(spec))["kind"]
  if kind != "toy_recognizer":
    raise ValueError(f"stylegan2.feature_d = {spec!r} holds a {kind!r} model; the feature "
                     "critic reads a toy_recognizer (e.g. the shipped 'toy-recognizer')")
  recognizer, variables = pretrained.load(spec)
  pretrained.refuse_the_judge("stylegan2.feature_d", spec, variables)
  critic = FeatureCritic(recognizer=recognizer, head=FeatureHead(int(c.feature_d_width)),
                         tx=lazy_adam(float(c.lr), 0))
  return critic, {"feature_net": jax.tree.map(jnp.asarray, variables)}


def recipe_from_config(c: ml_collections.ConfigDict, batch_size: int) -> Recipe:
  """The :class:`Recipe` of ``config.stylegan2`` at this batch size (bad attribute-term
  settings refused by name)."""
  recipe = Recipe(batch_size=batch_size, r1=float(c.r1), d_reg_every=int(c.d_reg_every),
                  path_regularize=float(c.path_regularize), g_reg_every=int(c.g_reg_every),
                  path_batch_shrink=int(c.path_batch_shrink), mixing=float(c.mixing),
                  ema_decay=ema_decay(batch_size, float(c.ema_kimg)),
                  augment=tuple(c.augment), feature_weight=float(c.get("feature_d_weight", 1.0)),
                  feature_r1=float(c.get("feature_d_r1", 1.0)),
                  attribute_weight=float(c.get("feature_d_attributes", 0.0)),
                  attribute_decay=float(c.get("feature_d_attribute_decay", 0.98)),
                  attribute_temperature=float(c.get("feature_d_attribute_temperature", 1.0)),
                  attribute_on_ema=bool(c.get("feature_d_attribute_on_ema", False)),
                  attribute_balanced=bool(c.get("feature_d_attribute_balanced", False)))
  if recipe.attribute_temperature < 0 or not 0 <= recipe.attribute_decay < 1:
    raise ValueError(
        f"stylegan2.feature_d_attribute_temperature = {recipe.attribute_temperature} and "
        f"feature_d_attribute_decay = {recipe.attribute_decay}: the temperature must be >= 0 "
        "(0 = predicted labels) and the running mean's decay in [0, 1)")
  return recipe


def build(config, workdir: str, previous) -> Stage:
  del workdir, previous
  c = config.stylegan2
  if int(c.size) != int(config.image_size):
    raise ValueError(f"stylegan2.size {c.size} must equal image_size {config.image_size}")
  generator, discriminator = build_networks(c)
  batch_size = int(config.train.batch_size)
  recipe = recipe_from_config(c, batch_size)
  g_tx, d_tx = lazy_adam(float(c.lr), recipe.g_reg_every), lazy_adam(float(c.lr),
                                                                      recipe.d_reg_every)
  critic, frozen = feature_critic(c)
  if recipe.attribute_weight:
    if critic is None:
      raise ValueError("stylegan2.feature_d_attributes needs stylegan2.feature_d (the "
                       "recognizer whose attribute predictions it matches)")
    frozen["attribute_targets"] = attribute_frequencies(
        critic.recognizer, frozen["feature_net"], config.data, int(config.image_size),
        int(c.get("feature_d_attribute_faces", 2000)),
        temperature=recipe.attribute_temperature)
    if recipe.attribute_balanced:
      frozen["attribute_class_weights"] = balanced_class_weights(frozen["attribute_targets"])
  init = functools.partial(init_state, generator=generator, discriminator=discriminator,
                           g_tx=g_tx, d_tx=d_tx, critic=critic,
                           attribute_targets=frozen.get("attribute_targets"))
  source = (config.get("pretrained") or {}).get("init_from", "")
  provenance = None
  if source:
    init = warm_started(init, source, g_tx=g_tx, d_tx=d_tx)
    provenance = earlier_training(source)
  step = functools.partial(train_step, generator=generator, discriminator=discriminator,
                           g_tx=g_tx, d_tx=d_tx, recipe=recipe, critic=critic)
  sample_z = jax.random.normal(jax.random.key(1234), (8, generator.style_dim))

  def preview(g_params, g_collections, frozen, batch):
    del frozen
    images = generator.apply({"params": g_params, **g_collections}, [sample_z])
    return [batch["image"][:8], images[:batch["image"].shape[0]]]

  def batches(start_step: int):
    return data_pipeline.make_train_iterator(
        config.data, image_size=config.image_size, global_batch_size=batch_size,
        seed=config.seed, start_step=start_step, verbose=jax.process_index() == 0,
        with_masks=False)

  def describe(state) -> str:
    text = (f"generator {parameter_count(state.g_params):,} parameters; discriminator "
            f"{parameter_count(state.d_params):,}")
    if critic is not None:
      text += (f"; feature critic {parameter_count(state.aux['feature_d']):,} on "
               f"{c.feature_d}")
    return text

  architecture = {"stage": "stylegan2", "image_size": int(config.image_size),
                  "stylegan2": generator_config(c), "d_channels": list(c.d_channels)}
  if critic is not None:           # the checkpoint then holds the critic's head in aux
    architecture["feature_d_width"] = int(c.feature_d_width)
  return Stage(name="stylegan2", architecture=architecture, init=init, step=step,
               batches=batches, frozen=frozen, preview=preview,
               log_prefixes=("g/", "d/", "fd/"), describe=describe,
               step_phase=functools.partial(step_phase, recipe), provenance=provenance)


def config_defaults() -> ml_collections.ConfigDict:
  """``config.stylegan2`` defaults (``configs/stage_defaults.py``)."""
  return stage_defaults.stylegan2()


def export_variables(meta: dict, params, collections, workdir: str):
  """(kind, config, variables) of a trained generator for ``pretrained.save``."""
  del workdir
  return "stylegan2", dict(meta["architecture"]["stylegan2"]), {"params": params, **collections}


DISCRIMINATOR_DIR = "discriminator"     # beside the generator in an exported directory
TRAINING_FILE = "training.json"         # step and path-length mean of the exported run


def export_training(meta: dict, state: dict, out: str) -> None:
  """Writes what continuing the GAN needs beside an exported generator: the discriminator
  (``OUT/discriminator``, kind ``stylegan2_discriminator``) and ``OUT/training.json`` (this
  run's steps and images seen, ``kimg_total`` with the runs it continued, the path-length
  regulariser's running mean). ``init_from`` reads both."""
  arch = meta["architecture"]
  d_config = {"size": int(arch["image_size"]), "channels": list(arch["d_channels"])}
  d_params = jax.tree.map(lambda x: np.asarray(x, np.float32), state["d_params"])
  pretrained.save(os.path.join(out, DISCRIMINATOR_DIR), "stylegan2_discriminator", d_config,
                  {"params": d_params})
  batch = int(meta["config"]["train"]["batch_size"])
  kimg = int(meta["step"]) * batch / 1000.0
  provenance = meta.get("provenance")
  source = (meta["config"].get("pretrained") or {}).get("init_from", "")
  if provenance is None and source:        # a run started before runs kept their provenance
    provenance = earlier_training(source)
  info = {"step": int(meta["step"]), "kimg": kimg,
          "kimg_total": kimg + (provenance or {}).get("kimg_total", 0.0),
          "mean_path_length": float(np.asarray(state["aux"]["mean_path_length"]))}
  if provenance:
    info["continued_from"] = provenance
  with open(os.path.join(out, TRAINING_FILE), "w", encoding="utf-8") as f:
    json.dump(info, f, indent=2)


def _training_info(directory: str) -> dict:
  """``training.json`` beside an exported generator, or {} when it has none."""
  path = os.path.join(directory, TRAINING_FILE)
  if not os.path.isfile(path):
    return {}
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def earlier_training(source: str) -> dict:
  """What a run warm-started from the exported generator ``source`` continues: its name and
  the images (thousands) that had trained it in all (its ``kimg_total``; ``kimg`` for exports
  written before totals were kept; 0 when unknown)."""
  info = _training_info(pretrained.resolve(source))
  return {"init_from": source,
          "kimg_total": float(info.get("kimg_total", info.get("kimg", 0.0)))}


def warm_started(init, source: str, *, g_tx, d_tx):
  """``init`` whose generator (trained weights and EMA alike) starts from the exported
  generator ``source`` (a directory or short name), and whose discriminator and path-length mean
  start from what :func:`export_training` wrote beside it (a fresh discriminator when there is
  none); optimizer states start fresh. Only a new run calls ``init``."""
  directory = pretrained.resolve(source)
  _, g_vars = pretrained.load(directory)
  g_vars = dict(g_vars)
  g_params = g_vars.pop("params")
  d_dir = os.path.join(directory, DISCRIMINATOR_DIR)
  d_params = pretrained.load(d_dir)[1]["params"] if os.path.isdir(d_dir) else None
  info = _training_info(directory)

  @functools.wraps(init)         # the loop's resume reads the state's shapes from init itself
  def warm(rng):
    state = init(rng)
    shapes = lambda t: jax.tree.map(lambda x: (tuple(x.shape), str(x.dtype)), t)
    if shapes((state.g_params, state.g_collections)) != shapes(
        (g_params, {k: g_vars[k] for k in state.g_collections if k in g_vars})):
      raise ValueError(f"pretrained.init_from={source!r}: its generator does not have this "
                       "config's architecture (stylegan2 widths, style_dim, n_mlp)")
    d = state.d_params
    if d_params is not None:
      if shapes(d_params) != shapes(state.d_params):
        raise ValueError(f"pretrained.init_from={source!r}: its discriminator does not have "
                         "this config's d_channels")
      d = d_params
    params = jax.tree.map(jnp.asarray, g_params)
    collections = {k: jax.tree.map(jnp.asarray, g_vars[k]) for k in state.g_collections}
    d = jax.tree.map(jnp.asarray, d)
    mean_path = jnp.asarray(info.get("mean_path_length", 0.0), jnp.float32)
    return state.replace(g_params=params, g_collections=collections, g_opt_state=g_tx.init(params),
                         ema_params=jax.tree.map(jnp.copy, params), d_params=d,
                         d_opt_state=d_tx.init(d),
                         aux={**state.aux, "mean_path_length": mean_path})
  return warm


SPEC = StageSpec(name="stylegan2", build=build,
                 defaults=lambda: {"stylegan2": config_defaults()},
                 export=export_variables, export_training=export_training)
