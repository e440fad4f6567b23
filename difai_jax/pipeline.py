"""The DiFAI data flow (Yoon et al., section 3, eq. 1-5), shared by train, evaluate and inpaint.

Read top to bottom, for a ground-truth face ``image`` and a ``mask`` (1 = known, 0 = hole)::

    I_masked   = image * mask                                  eq. 1   masked_image
    I_coarse   = I_masked + hole * C(I_masked, mask)           eq. 2   coarse_completion
    W+         = pSp.encode(I_coarse)                                  invert
   (W+        <- Adam on W+ against the known pixels, opt-in, not the paper: fit_codes_to_known)
    W+_i       = W+ + d_i n_i,  i = 1..alpha (SeFa directions) eq. 3   sefa_latents
    I_style_j  = StyleGAN2(W+_j),  j = 0..alpha  (W+_0 = W+)           style_images
    I_style'_j = I_masked + hole * I_style_j                   eq. 4   style_prime
    I_out_j    = G(I_masked, I_style'_j, mask)                 eq. 5   generate
    result_j   = I_masked + hole * I_out_j   (known pixels bit-exact)  composite

Everything before ``generate`` is frozen (no gradients). Arrays with a leading K = 1 + alpha axis
hold one entry per style image, j = 0 first. Images are NHWC in [-1, 1].

Modules are static (hashable flax modules); variables are passed in a dict so that jitted
callers take them as arguments, never as baked-in constants:
``{"coarse": ..., "psp": ..., "generator": ..., "sefa": (n_dirs, style_dim) directions}``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import optax

from difai_jax import runtime
from difai_jax import sefa as sefa_lib
from difai_jax.models import coarse as coarse_lib
from difai_jax.models import psp as psp_lib
from difai_jax.models import sparn as sparn_lib
from difai_jax.nn import variants



def composite(i_masked: jax.Array, i_out: jax.Array, mask: jax.Array) -> jax.Array:
  """The paper's composite ``I_masked + hole * I_out`` (also I_style'); known pixels stay
  bit-exact (x + 0 * y is x exactly for finite y), hole pixels equal ``i_out``.

  Args:
    i_masked: (N, H, W, C) known pixels, zero in the hole (``image * mask``), in [-1, 1].
    i_out: (N, H, W, C), or (K, N, H, W, C) with ``i_masked`` and ``mask`` shared by every j.
    mask: (N, H, W, 1), 1 = known, 0 = hole.
  """
  if i_out.ndim == i_masked.ndim + 1:
    k = i_out.shape[0]
    out = composite(_repeat_variants(i_masked, k), variants.fold_variants(i_out),
                    _repeat_variants(mask, k))
    return variants.unfold_variants(out, k)
  if i_masked.shape != i_out.shape:
    raise ValueError(f"composite: i_masked {i_masked.shape} and i_out {i_out.shape} differ")
  n, h, w = i_masked.shape[:3]
  if mask.ndim != 4 or tuple(mask.shape) != (n, h, w, 1):
    raise ValueError(
        f"composite: mask must have shape (N, H, W, 1) = {(n, h, w, 1)} matching the image "
        f"(1 = known pixel, 0 = hole); got {tuple(mask.shape)}")
  return i_masked + (1.0 - mask).astype(i_out.dtype) * i_out


def _repeat_variants(x: jax.Array, k: int) -> jax.Array:
  """(N, ...) -> (N * K, ...): each image once per variant, folded as ``fold_variants``."""
  return jnp.repeat(x, k, axis=0)


@dataclasses.dataclass(frozen=True)
class Models:
  """The networks of the DiFAI pipeline (architecture only; variables travel separately)."""
  coarse: coarse_lib.CoarseNet
  psp: psp_lib.PSP
  generator: sparn_lib.DiFAIGenerator
  image_size: int
  # Resolution at which the StyleGAN2 decode of the style images stops (its ToRGB skip image
  # there); 0 = the decoder's full resolution, as the paper. A non-paper speed option
  # (config.pretrained.psp_decode_size).
  psp_decode_size: int = 0


@dataclasses.dataclass(frozen=True)
class SefaSampling:
  """How training draws the alpha SeFa edits of eq. 3 (one set per sample).

  Each edit takes one of the ``top_k`` strongest directions (distinct within a sample) and a
  degree of random sign and magnitude in ``[min_degree, max_degree]``; the paper's diversity
  comes from these perturbed style images.
  """
  num_edits: int = 2        # alpha
  top_k: int = 8
  min_degree: float = 2.0
  max_degree: float = 5.0
  layers: tuple[int, ...] | None = None   # W+ layers moved; None = all


def resize(images: jax.Array, size: int) -> jax.Array:
  """Square NHWC images -> ``size`` px: mean pooling for integer down factors (pSp's face
  pool), bilinear otherwise (no antialiasing, as torch)."""
  h = images.shape[-3]
  if h == size:
    return images
  lead = images.shape[:-3]
  flat = images.reshape((-1,) + images.shape[-3:])
  if h > size and h % size == 0:
    out = psp_lib.adaptive_avg_pool(flat, size, size)
  else:
    out = jax.image.resize(flat, (flat.shape[0], size, size, flat.shape[-1]), "bilinear",
                           antialias=False)
  return out.reshape(lead + out.shape[1:])


def masked_image(image: jax.Array, mask: jax.Array) -> jax.Array:
  """Eq. 1: ``I_masked = image * mask`` (mask (N, H, W, 1), 1 = known)."""
  return image * mask


def coarse_completion(coarse: coarse_lib.CoarseNet, variables, i_masked, mask) -> jax.Array:
  """Eq. 2: the coarse net's full-resolution output, composited with the known pixels."""
  outputs = coarse.apply(variables, i_masked, mask)
  return composite(i_masked, outputs.full, mask)


def invert(psp: psp_lib.PSP, variables, images: jax.Array) -> jax.Array:
  """pSp encoding of images (N, H, W, 3) -> W+ (N, n_styles, style_dim), latent_avg included."""
  return psp.apply(variables, resize(images, psp.input_size), method="encode")


def sefa_latents(w_plus: jax.Array, directions: jax.Array, components: jax.Array,
                 degrees: jax.Array, layers: tuple[int, ...] | None = None) -> jax.Array:
  """Eq. 3 for every edit: ``[W+, W+ + d_1 n_c1, ..., W+ + d_alpha n_calpha]`` ->
  (1 + alpha, N, L, D), each move :func:`difai_jax.sefa.move`.

  Args:
    w_plus: (N, L, D).
    directions: (n_dirs, D) SeFa directions (rows, strongest first).
    components: (N, alpha) integer direction indices.
    degrees: (N, alpha) step sizes d_i.
    layers: W+ layers to move (None: all).
  """
  moved = [sefa_lib.move(w_plus, directions[components[:, i]][:, None, :], degrees[:, i], layers)
           for i in range(components.shape[1])]
  return jnp.stack([w_plus] + moved)


def style_images(psp: psp_lib.PSP, variables, latents: jax.Array, image_size: int,
                 decode_size: int = 0) -> jax.Array:
  """StyleGAN2 decoding of (K, N, L, D) W+ codes -> (K, N, image_size, image_size, 3).

  All K * N codes go through one decoder batch (folded sample-major, so that a batch split over
  a mesh stays split: ``variants.fold_variants``). ``decode_size`` > 0 stops the decoder at that
  resolution (its ToRGB skip image, then resized) instead of decoding at full resolution and
  pooling: a non-paper approximation (``config.pretrained.psp_decode_size``).
  """
  k = latents.shape[0]
  images = psp.apply(variables, variants.fold_variants(latents), resize=False,
                     return_latents=False, method="decode", stop_at=decode_size or None)
  return variants.unfold_variants(resize(images, image_size), k)


def fit_codes_to_known(models: Models, variables: Mapping[str, Any], i_masked: jax.Array,
                       mask: jax.Array, w_plus: jax.Array, steps: int,
                       lr: float = runtime.REFINE_LR) -> jax.Array:
  """Not the paper (opt-in at inference): ``steps`` Adam steps on pSp's W+ (N, L, D) lowering
  each image's mean squared error between its style image and ``i_masked`` over the *known*
  pixels only (the frozen decoder; the hole is left to the prior).

  pSp inverts I_coarse, whose hole is the coarse net's blurry guess; the known pixels are the
  truth, and codes that draw them closer draw a closer hole too (README, "Fitting the codes
  to the known pixels"). Each image's loss is its own (summed over the
  batch), so an image's codes do not depend on the other rows of its batch. ``steps`` is static
  (0 returns ``w_plus`` unchanged); the loop runs inside the caller's jit (``lax.fori_loop``).
  """
  if steps < 0:
    raise ValueError(f"refine_steps must be >= 0, got {steps}")
  if steps == 0:
    return w_plus
  optimizer = optax.adam(lr)
  counts = jnp.maximum(3.0 * jnp.sum(mask, axis=(1, 2, 3)), 1.0)

  def loss(w):
    image = style_images(models.psp, variables["psp"], w[None], models.image_size,
                         models.psp_decode_size)[0]
    return jnp.sum(jnp.sum(mask * jnp.square(image - i_masked), axis=(1, 2, 3)) / counts)

  def step(_, carry):
    w, state = carry
    updates, state = optimizer.update(jax.grad(loss)(w), state, w)
    return optax.apply_updates(w, updates), state

  w, _ = jax.lax.fori_loop(0, steps, step, (w_plus, optimizer.init(w_plus)))
  return jax.lax.stop_gradient(w)


def style_prime(i_masked: jax.Array, mask: jax.Array, i_style: jax.Array) -> jax.Array:
  """Eq. 4: ``I_style' = I_masked + hole * I_style`` for every j (i_style (K, N, H, W, 3))."""
  return composite(i_masked, i_style, mask)


def sample_sefa_edits(rng: jax.Array, n: int, sampling: SefaSampling,
                      n_directions: int) -> tuple[jax.Array, jax.Array]:
  """Random SeFa edits for training: components (N, alpha) int32 and degrees (N, alpha)."""
  k_comp, k_mag, k_sign = jax.random.split(rng, 3)
  top_k = min(sampling.top_k, n_directions)
  if sampling.num_edits > top_k:
    raise ValueError(f"cannot draw {sampling.num_edits} distinct SeFa directions from the top "
                     f"{top_k}")
  # distinct components per sample: the first alpha entries of a random permutation
  scores = jax.random.uniform(k_comp, (n, top_k))
  components = jnp.argsort(scores, axis=1)[:, :sampling.num_edits].astype(jnp.int32)
  magnitude = jax.random.uniform(k_mag, (n, sampling.num_edits), minval=sampling.min_degree,
                                 maxval=sampling.max_degree)
  sign = jnp.where(jax.random.bernoulli(k_sign, 0.5, (n, sampling.num_edits)), 1.0, -1.0)
  return components, magnitude * sign


def style_conditions(models: Models, variables: Mapping[str, Any], image: jax.Array,
                     mask: jax.Array, components: jax.Array, degrees: jax.Array,
                     layers: tuple[int, ...] | None = None) -> dict[str, jax.Array]:
  """The frozen part of the pipeline (eq. 1-4), without gradients.

  Returns a dict with ``i_masked`` (N, H, W, 3), ``i_coarse`` (N, H, W, 3), ``w_plus``
  (N, L, D), ``i_style`` and ``i_style_prime`` (K, N, H, W, 3).
  """
  i_masked = masked_image(image, mask)
  i_coarse = coarse_completion(models.coarse, variables["coarse"], i_masked, mask)
  w_plus = invert(models.psp, variables["psp"], i_coarse)
  latents = sefa_latents(w_plus, variables["sefa"], components, degrees, layers)
  i_style = style_images(models.psp, variables["psp"], latents, models.image_size,
                         models.psp_decode_size)
  out = {"i_masked": i_masked, "i_coarse": i_coarse, "w_plus": w_plus, "i_style": i_style,
         "i_style_prime": style_prime(i_masked, mask, i_style)}
  return jax.tree.map(jax.lax.stop_gradient, out)


def generate(generator: sparn_lib.DiFAIGenerator, variables, i_masked: jax.Array,
             i_style_prime: jax.Array, mask: jax.Array, *, train: bool = False,
             mutable=False, valid: jax.Array | None = None):
  """Eq. 5 for every style image: (K, N, H, W, 3) raw outputs I_out_j.

  The K variants run as one generator batch of N * K, sample-major (``variants.fold_variants``:
  a batch split over a mesh stays split), with ``num_completions=K``:
  batch statistics (region norm with ``rn_stats='batch'``, BatchNorm in training) are pooled
  over the N images of each variant j and never across variants, so I_out_j is what a forward
  of variant j alone gives and does not change with K.

  Args:
    i_masked: (N, H, W, 3); i_style_prime: (K, N, H, W, 3); mask: (N, H, W, 1).
    train: the generator's training forward (BatchNorm batch statistics, spectral-norm power
      iteration); pass ``mutable=list(collections)`` with it.
    mutable: collections to update, e.g. ``["batch_stats", "spectral"]``; then returns
      ``(i_out, updated_collections)``.
    valid: optional (N,), 1 = real image, 0 = padding row kept out of the batch statistics.
  """
  k = i_style_prime.shape[0]
  result = generator.apply(variables, _repeat_variants(i_masked, k),
                           variants.fold_variants(i_style_prime), _repeat_variants(mask, k),
                           train=train, num_completions=k, mutable=mutable,
                           valid=None if valid is None else _repeat_variants(valid, k))
  i_out, updates = result if mutable else (result, None)
  i_out = variants.unfold_variants(i_out, k)
  return (i_out, updates) if mutable else i_out


def complete_with_codes(models: Models, variables: Mapping[str, Any], i_masked: jax.Array,
            mask: jax.Array, latents: jax.Array,
            valid: jax.Array | None = None) -> dict[str, jax.Array]:
  """Eq. 4-5 and the composite for given W+ codes (K, N, L, D): the style images, I_style',
  the generator's raw outputs and the completions, each (K, N, H, W, C).

  :func:`inpaint` runs it on the SeFa-moved codes of eq. 3; any other codes of the same shape
  (other edits, another face's W+) go through the same step. ``valid`` as in :func:`generate`.
  """
  i_style = style_images(models.psp, variables["psp"], latents, models.image_size,
                         models.psp_decode_size)
  return complete_with_styles(models, variables, i_masked, mask, i_style, valid)


def complete_with_styles(models: Models, variables: Mapping[str, Any], i_masked: jax.Array,
                         mask: jax.Array, i_style: jax.Array,
                         valid: jax.Array | None = None) -> dict[str, jax.Array]:
  """:func:`complete_with_codes` from the style images (K, N, H, W, 3) on: I_style', the
  generator's raw outputs and the completions (style images made otherwise, e.g. blended, go
  through the same step)."""
  i_style_prime = style_prime(i_masked, mask, i_style)
  i_out = generate(models.generator, variables["generator"], i_masked, i_style_prime, mask,
                   valid=valid)
  return {"i_style": i_style, "i_style_prime": i_style_prime, "i_out": i_out,
          "completions": composite(i_masked, i_out, mask)}


def inpaint(models: Models, variables: Mapping[str, Any], image: jax.Array, mask: jax.Array,
            components: jax.Array, degrees: jax.Array,
            layers: tuple[int, ...] | None = None, *,
            variants_per_call: int | None = None, valid: jax.Array | None = None,
            refine_steps: int = 0,
            refine_lr: float = runtime.REFINE_LR) -> dict[str, jax.Array]:
  """The whole pipeline at inference: eq. 1-5 plus the composite.

  The coarse net and the pSp encoder run once per image, whatever K; the K style variants then
  go through the StyleGAN2 decoder and the generator ``variants_per_call`` at a time (a
  ``lax.map`` over groups of variants). The numbers do not depend on it (each variant's batch
  statistics are its own, see :func:`generate`); the working set does: one variant of the
  1024 px decoder holds ~0.27 GiB of activations per image.

  Args:
    image: (N, H, W, 3) in [-1, 1] (only its known pixels are used); mask (N, H, W, 1).
    components, degrees: (N, alpha) SeFa edits (alpha may be 0: only I_style itself).
    variants_per_call: variants per decoder / generator call, a divisor of K = 1 + alpha.
      None: one on CPU (the working set of one variant; measured faster there, benchmarks/
      RESULTS.md "Inference"), all K at once on accelerators.
    valid: optional (N,), 1 = real image, 0 = a padding row (a last batch filled up to a
      compiled size): padding stays out of the generator's batch statistics (region norm with
      ``rn_stats='batch'``), so real images get what a batch of them alone gives. The coarse
      net, pSp and StyleGAN2 are per image and need no flag.
    refine_steps, refine_lr: > 0 fits pSp's codes to the known pixels before the edits
      (:func:`fit_codes_to_known`, not the paper); ``w_plus`` is then the fitted codes.

  Returns:
    the :func:`style_conditions` dict plus ``i_out`` (K, N, H, W, 3) raw outputs and
    ``completions`` (K, N, H, W, 3) = ``I_masked + hole * I_out_j``.
  """
  k = 1 + components.shape[-1]
  if variants_per_call is None:
    variants_per_call = 1 if jax.default_backend() == "cpu" else k
  if variants_per_call < 1 or k % variants_per_call:
    raise ValueError(f"variants_per_call must divide K = {k}; got {variants_per_call}")
  i_masked = masked_image(image, mask)
  i_coarse = coarse_completion(models.coarse, variables["coarse"], i_masked, mask)
  w_plus = invert(models.psp, variables["psp"], i_coarse)
  w_plus = fit_codes_to_known(models, variables, i_masked, mask, w_plus, refine_steps, refine_lr)
  latents = sefa_latents(w_plus, variables["sefa"], components, degrees, layers)

  def variants(latents):
    return complete_with_codes(models, variables, i_masked, mask, latents, valid=valid)

  if variants_per_call == k:
    out = variants(latents)
  else:
    groups = latents.reshape((k // variants_per_call, variants_per_call) + latents.shape[1:])
    out = {name: x.reshape((k,) + x.shape[2:])
           for name, x in jax.lax.map(variants, groups).items()}
  return {"i_masked": i_masked, "i_coarse": i_coarse, "w_plus": w_plus, **out}
