"""The training losses of DiFAI (Yoon et al., Sec. 3.4, eq. 6-11), one named function per term.

Notation: ``mask`` is the paper's M (1 = known pixel, 0 = hole) with shape
(N, H, W, 1); ``hole = 1 - mask`` is M_r. For one masked input the generator produces K = 1 + alpha
outputs ``I_out_j``, one per style image ``I_style_j``: j = 0 is conditioned on the pSp inversion
itself, j >= 1 on its SeFa-perturbed versions. The train step stacks them on a leading axis:

* ``i_out``, ``i_style``: (K, N, H, W, 3) images in [-1, 1];
* ``i_gt``: (N, H, W, 3), ``mask``: (N, H, W, 1);
* VGG-19 features: dicts ``tap -> (K, N, h, w, C)`` for the outputs and style images, and
  ``tap -> (N, h, w, C)`` for I_gt (see :func:`stacked_features`). A (N, ...) array where a
  (K, N, ...) one is expected is read as K = 1.

Terms and equations:

=================================  ==========  ==============================================
function                            equation    what it constrains
=================================  ==========  ==============================================
:func:`hole_l1`, :func:`valid_l1`   (eq. 11)    I_out_0 vs I_gt, per region, L1
:func:`perceptual_loss`             eq. 6       VGG features: I_out_j vs I_style_j in the
                                                hole (all j), I_out_0 vs I_gt where known
:func:`style_loss`                  eq. 7       the same on Gram matrices
:func:`ms_ssim_loss`                eq. 8       1 - MS-SSIM(I_out_0, I_gt)
:func:`generator_adversarial_loss`  eq. 9       WGAN: -E[D(fake)]
:func:`critic_loss`                 eq. 10      WGAN-GP: E[D(fake)] - E[D(real)] + 10 GP
:func:`total_generator_loss`        eq. 11      sum of lambda_t * term_t
:func:`coarse_loss`                 (MLGN)      the coarse net's SmoothL1 + MS-SSIM (+ adv.)
=================================  ==========  ==============================================

``training/steps.py`` calls exactly these: the DiFAI step every term of eq. 6-11, the coarse
step :func:`coarse_loss`.

Only j = 0 is tied to the ground truth (L1, MS-SSIM and the known-region feature terms): the
outputs j >= 1 must stay free to differ from I_gt in the hole, and are tied to their own style
image there instead.

Normalisation choices (the paper leaves them open):

* L1 and perceptual terms are *region means*: the sum of the masked absolute differences over the
  batch divided by the number of (pixels or feature cells) x channels in the region, so a term
  does not shrink with the size of its region. A region that is empty in the whole batch gives 0
  (division guarded with ``where``; gradients stay finite).
* Masks are resized to a feature map by area averaging (the fraction of hole pixels under each
  cell, floor-cropped like VGG's max pools), so the hole and known weights sum to 1 in every cell.
* Gram matrices are normalised by C * h * w (Gatys et al.; partial-conv inpainting, Liu et al.
  2018); the style term is the mean absolute difference of the Gram entries.
* Terms summed over j are sums (as in eq. 6-7), not means: lambda_perceptual and lambda_style
  weigh K feature comparisons.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp

from difai_jax.evaluation.metrics import ssim as ssim_lib
from difai_jax.models.coarse import CoarseOutputs

Features = Mapping[str, jnp.ndarray]

LAMBDA_GP = 10.0  # WGAN-GP weight (Gulrajani et al. 2017)


# ---- helpers ----

def _safe_divide(numerator: jnp.ndarray, denominator: jnp.ndarray) -> jnp.ndarray:
  """``numerator / denominator``, and 0 where the denominator is 0 (numerator then is 0 too)."""
  positive = denominator > 0
  return jnp.where(positive, numerator / jnp.where(positive, denominator, 1.0), 0.0)


def _weighted_mean(values: jnp.ndarray, weights: jnp.ndarray) -> jnp.ndarray:
  """Mean of ``values`` (..., h, w, C) weighted by ``weights`` (..., h, w, 1), over everything.

  Returns ``sum(weights * values) / (C * sum(weights))``, 0 when all weights are 0.
  """
  weights = jnp.broadcast_to(weights, values.shape[:-1] + (1,))
  total = jnp.sum(values * weights)
  count = jnp.sum(weights) * values.shape[-1]
  return _safe_divide(total, count)


def _with_k(x: jnp.ndarray, ndim: int) -> jnp.ndarray:
  """Adds the leading K axis to a (N, ...) array of rank ``ndim - 1``."""
  if x.ndim == ndim - 1:
    return x[None]
  if x.ndim != ndim:
    raise ValueError(f"expected an array of rank {ndim} (K, N, ...) or {ndim - 1} (N, ...), "
                     f"got shape {x.shape}")
  return x


def _check_mask(mask: jnp.ndarray, image: jnp.ndarray) -> None:
  if mask.ndim != 4 or mask.shape[-1] != 1:
    raise ValueError(f"mask must have shape (N, H, W, 1) (1 = known, 0 = hole), got {mask.shape}")
  if mask.shape[:3] != image.shape[-4:-1]:
    raise ValueError(f"mask of shape {mask.shape} does not match images of shape {image.shape}")


def resize_mask(mask: jnp.ndarray, size: tuple[int, int]) -> jnp.ndarray:
  """Area-downsamples a (N, H, W, 1) mask to (N, h, w, 1) with integer factors H // h, W // w.

  Trailing rows/columns beyond ``h * (H // h)`` are dropped, as a floor max pool drops them, so
  each output cell is the fraction of mask-1 pixels in the block its feature cell sees.
  """
  n, height, width, c = mask.shape
  h, w = size
  if h > height or w > width or h < 1 or w < 1:
    raise ValueError(f"cannot downsample a mask of size {(height, width)} to {size}")
  fh, fw = height // h, width // w
  mask = mask[:, :h * fh, :w * fw]
  return mask.reshape(n, h, fh, w, fw, c).mean(axis=(2, 4))


def stacked_features(feature_fn: Callable[[jnp.ndarray], Features],
                     images: jnp.ndarray) -> dict[str, jnp.ndarray]:
  """Applies an NHWC feature network to a stack of batches.

  Args:
    feature_fn: ``(M, H, W, 3) -> {tap: (M, h, w, C)}``, e.g.
      ``lambda x: vgg.apply(vgg_variables, x)``.
    images: (K, N, H, W, 3) (or any number of leading axes before H, W, 3).

  Returns:
    ``{tap: (K, N, h, w, C)}`` in float32 (one call of ``feature_fn`` on K * N images).
  """
  lead = images.shape[:-3]
  feats = feature_fn(_batch_major(images))
  batch_first = lead[-1:] + lead[:-1]      # (N * K, h, w, C) -> (N, K, h, w, C) -> (K, N, ...)
  return {t: jnp.moveaxis(f.astype(jnp.float32).reshape(batch_first + f.shape[1:]), 0,
                          len(lead) - 1)
          for t, f in feats.items()}


def _batch_major(images: jnp.ndarray) -> jnp.ndarray:
  """(K, N, H, W, C) (any leading axes, the batch N last of them) -> (N * K, H, W, C), the
  batch axis outermost: a batch split over a device mesh stays split (a fold with K outermost
  would make XLA gather the whole batch on every device)."""
  lead = images.ndim - 3
  if lead > 1:
    images = jnp.moveaxis(images, lead - 1, 0)
  return images.reshape((-1,) + images.shape[-3:])


# ---- pixel terms (eq. 11: L_hole, L_valid) ----

L1_NORMALIZATIONS = ("image", "region")


def _region_l1(i_out0, i_gt, weights, normalization: str) -> jnp.ndarray:
  if normalization == "image":
    # The partial-convolution loss's L1 (Liu et al. 2018, nn.L1Loss over the masked images):
    # mean over every pixel and channel of the batch, so a term grows with its region's size.
    weights = jnp.broadcast_to(weights, i_out0.shape[:-1] + (1,))
    return jnp.mean(weights * jnp.abs(i_out0 - i_gt))
  if normalization == "region":
    return _weighted_mean(jnp.abs(i_out0 - i_gt), weights)
  raise ValueError(f"L1 normalization must be one of {L1_NORMALIZATIONS}, got {normalization!r}")


def hole_l1(i_out0: jnp.ndarray, i_gt: jnp.ndarray, mask: jnp.ndarray,
            normalization: str = "image") -> jnp.ndarray:
  """L1 of I_out_0 vs I_gt in the hole.

  Args:
    i_out0: (N, H, W, 3) the output conditioned on I_style (j = 0); i_gt: (N, H, W, 3);
    mask: (N, H, W, 1), 1 = known.
    normalization: "image" (default): ``sum(M_r |I_out_0 - I_gt|) / (3 N H W)``, the
      partial-convolution loss's normalisation, which the paper's hole / valid weights (3, 0.5
      = PConv's 6 : 1) assume; "region": divided by the hole's own size ``3 sum(M_r)`` (this
      scales the term by 1 / hole ratio).

  Returns:
    a scalar over the batch; 0 with no hole.
  """
  _check_mask(mask, i_out0)
  return _region_l1(i_out0, i_gt, 1.0 - mask, normalization)


def valid_l1(i_out0: jnp.ndarray, i_gt: jnp.ndarray, mask: jnp.ndarray,
             normalization: str = "image") -> jnp.ndarray:
  """L1 of I_out_0 vs I_gt on the known pixels (normalisations as :func:`hole_l1`)."""
  _check_mask(mask, i_out0)
  return _region_l1(i_out0, i_gt, mask, normalization)


# ---- feature terms (eq. 6-7) ----

def gram_matrix(features: jnp.ndarray) -> jnp.ndarray:
  """Gram matrix of feature maps, normalised by C * h * w.

  Args:
    features: (..., h, w, C).

  Returns:
    (..., C, C) with entry (a, b) = sum over cells of F_a F_b / (C h w).
  """
  *lead, h, w, c = features.shape
  flat = features.reshape(tuple(lead) + (h * w, c)).astype(jnp.float32)
  gram = jnp.einsum("...pa,...pb->...ab", flat, flat, precision=None)
  return gram / (c * h * w)


def _tap_masks(mask: jnp.ndarray, feats: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
  """(known, hole) weights of shape (N, h, w, 1) at the resolution of ``feats`` (..., h, w, C)."""
  known = resize_mask(mask.astype(jnp.float32), feats.shape[-3:-1])
  return known, 1.0 - known


def _check_taps(feats_out: Features, feats_style: Features, feats_gt: Features) -> None:
  if not feats_out:
    raise ValueError("no feature taps given")
  for name, other in (("feats_style", feats_style), ("feats_gt", feats_gt)):
    if set(other) != set(feats_out):
      raise ValueError(f"{name} has taps {sorted(other)}, feats_out has {sorted(feats_out)}")


def _per_tap(feats_out: Features, feats_style: Features, feats_gt: Features,
             mask: jnp.ndarray):
  """Yields, per tap, float32 ``out`` and ``style`` (K, N, h, w, C), ``gt`` (N, h, w, C) and the
  ``known`` / ``hole`` weights of the mask resized to the tap (shared by eq. 6 and eq. 7)."""
  _check_taps(feats_out, feats_style, feats_gt)
  for tap in feats_out:
    out = _with_k(feats_out[tap], 5).astype(jnp.float32)
    style = _with_k(feats_style[tap], 5).astype(jnp.float32)
    gt = feats_gt[tap].astype(jnp.float32)
    if out.shape != style.shape or out.shape[1:] != gt.shape:
      raise ValueError(f"tap {tap}: feature shapes differ: out {out.shape}, style {style.shape}, "
                       f"gt {gt.shape}")
    known, hole = _tap_masks(mask, gt)
    yield out, style, gt, known, hole


def perceptual_loss(feats_out: Features, feats_style: Features, feats_gt: Features,
                    mask: jnp.ndarray) -> jnp.ndarray:
  """Perceptual loss of eq. 6.

  ``sum_taps [ sum_j mean_{M_r}|F(I_out_j) - F(I_style_j)| + mean_M |F(I_out_0) - F(I_gt)| ]``,
  where ``mean_W`` is the region mean weighted by the mask resized to the tap
  (:func:`resize_mask`).

  Args:
    feats_out: ``{tap: (K, N, h, w, C)}`` features of I_out_j (j = 0 first).
    feats_style: ``{tap: (K, N, h, w, C)}`` features of I_style_j.
    feats_gt: ``{tap: (N, h, w, C)}`` features of I_gt.
    mask: (N, H, W, 1), 1 = known.

  Returns:
    scalar.
  """
  loss = 0.0
  for out, style, gt, known, hole in _per_tap(feats_out, feats_style, feats_gt, mask):
    for j in range(out.shape[0]):
      loss = loss + _weighted_mean(jnp.abs(out[j] - style[j]), hole)
    loss = loss + _weighted_mean(jnp.abs(out[0] - gt), known)
  return loss


def style_loss(feats_out: Features, feats_style: Features, feats_gt: Features,
               mask: jnp.ndarray) -> jnp.ndarray:
  """Style loss of eq. 7: the structure of :func:`perceptual_loss` on Gram matrices.

  ``sum_taps [ sum_j mean|G(M_r F(I_out_j)) - G(M_r F(I_style_j))|
  + mean|G(M F(I_out_0)) - G(M F(I_gt))| ]`` with :func:`gram_matrix` (normalised by C h w),
  the mask resized to the tap, and the mean over batch and the C x C entries.

  Args / Returns: as :func:`perceptual_loss`.
  """
  loss = 0.0
  for out, style, gt, known, hole in _per_tap(feats_out, feats_style, feats_gt, mask):
    # (K, N, h, w, C) -> (K, N, C, C)
    loss = loss + jnp.sum(jnp.mean(jnp.abs(gram_matrix(out * hole) - gram_matrix(style * hole)),
                                   axis=(1, 2, 3)))
    loss = loss + jnp.mean(jnp.abs(gram_matrix(out[0] * known) - gram_matrix(gt * known)))
  return loss


# ---- MS-SSIM (eq. 8) ----

def ms_ssim_loss(i_out0: jnp.ndarray, i_gt: jnp.ndarray,
                 weights: Sequence[float] = ssim_lib.MS_SSIM_WEIGHTS) -> jnp.ndarray:
  """``1 - MS-SSIM(I_out_0, I_gt)`` averaged over the batch (eq. 8).

  Args:
    i_out0, i_gt: (N, H, W, 3) in [-1, 1], the smaller side > ``10 * 2 ** (scales - 1)`` (160
      for the default 5 scales of an 11-pixel window). They are mapped to [0, 1] and compared
      with ``data_range=1`` (pytorch-msssim defaults otherwise: window 11, sigma 1.5).
    weights: the scale weights, finest first (default pytorch-msssim's five, 0.0448 ... 0.1333;
      the configs give fewer for small images).
  """
  if i_out0.ndim != 4:
    raise ValueError(f"ms_ssim_loss takes the j = 0 output, (N, H, W, 3); got {i_out0.shape}")
  value = ssim_lib.ms_ssim((i_out0 + 1.0) * 0.5, (i_gt + 1.0) * 0.5, data_range=1.0,
                           weights=weights)
  return 1.0 - jnp.mean(value)


# ---- WGAN-GP (eq. 9-10) ----

def _scores(critic_fn: Callable[[jnp.ndarray], jnp.ndarray], images: jnp.ndarray) -> jnp.ndarray:
  """Critic scores of (..., H, W, 3) images as a flat vector (one critic call)."""
  flat = _batch_major(images)
  return jnp.reshape(critic_fn(flat), (flat.shape[0],)).astype(jnp.float32)


def random_interpolates(real: jnp.ndarray, fake: jnp.ndarray, rng: jax.Array) -> jnp.ndarray:
  """``eps * real + (1 - eps) * fake`` with one ``eps ~ U[0, 1)`` per image.

  Args:
    real: (N, H, W, 3); fake: (N, H, W, 3) or (K, N, H, W, 3) (real is broadcast over K).
    rng: PRNG key.

  Returns:
    array of the shape of ``fake``; ``eps`` is ``jax.random.uniform(rng, fake.shape[:-3] +
    (1, 1, 1))``.
  """
  eps = jax.random.uniform(rng, fake.shape[:-3] + (1, 1, 1), dtype=jnp.float32)
  return eps * real + (1.0 - eps) * fake


def gradient_penalty(critic_fn: Callable[[jnp.ndarray], jnp.ndarray], real: jnp.ndarray,
                     fake: jnp.ndarray, rng: jax.Array) -> jnp.ndarray:
  """WGAN-GP gradient penalty ``E[(||grad_x D(x_hat)||_2 - 1)^2]`` (Gulrajani et al. 2017).

  Args:
    critic_fn: ``(M, H, W, 3) -> (M,)`` or ``(M, 1)`` scores; a closure over the critic's
      variables, so the penalty is differentiable with respect to them.
    real: (N, H, W, 3) I_gt; fake: (N, H, W, 3) or (K, N, H, W, 3) what the critic scores
      (the raw outputs I_out_j by default; ``steps.critic_input``).
    rng: PRNG key for the interpolation weights (:func:`random_interpolates`).

  Returns:
    scalar, the mean over all interpolates. The norm is ``sqrt(sum g^2 + 1e-12)`` so that a zero
    gradient gives a finite second derivative.
  """
  x_hat = random_interpolates(real, jax.lax.stop_gradient(fake), rng)
  x_hat = _batch_major(x_hat)
  grads = jax.grad(lambda x: jnp.sum(_scores(critic_fn, x)))(x_hat)
  norms = jnp.sqrt(jnp.sum(jnp.square(grads), axis=(1, 2, 3)) + 1e-12)
  return jnp.mean(jnp.square(norms - 1.0))


def critic_loss(critic_fn: Callable[[jnp.ndarray], jnp.ndarray], real: jnp.ndarray,
                fake: jnp.ndarray, rng: jax.Array,
                lambda_gp: float = LAMBDA_GP) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
  """Critic loss of eq. 10: ``E[D(fake)] - E[D(real)] + lambda_gp * GP``.

  Args:
    critic_fn, real, fake, rng: as :func:`gradient_penalty`; ``fake`` is held constant
      (``stop_gradient``): this loss trains the critic only.
    lambda_gp: gradient-penalty weight (10).

  Returns:
    ``(loss, {"wasserstein": E[D(real)] - E[D(fake)], "gradient_penalty": GP,
    "d_real": E[D(real)], "d_fake": E[D(fake)]})``.
  """
  fake = jax.lax.stop_gradient(fake)
  d_real = jnp.mean(_scores(critic_fn, real))
  d_fake = jnp.mean(_scores(critic_fn, fake))
  gp = gradient_penalty(critic_fn, real, fake, rng)
  loss = d_fake - d_real + lambda_gp * gp
  return loss, {"wasserstein": d_real - d_fake, "gradient_penalty": gp, "d_real": d_real,
                "d_fake": d_fake}


def generator_adversarial_loss(critic_fn: Callable[[jnp.ndarray], jnp.ndarray],
                               fake: jnp.ndarray) -> jnp.ndarray:
  """Generator's WGAN loss of eq. 9: ``-E[D(fake)]`` over all outputs j and images.

  Args:
    critic_fn: as :func:`gradient_penalty` (its variables are not updated by this loss; the
      train step differentiates with respect to the generator only).
    fake: (N, H, W, 3) or (K, N, H, W, 3), the same kind of image the critic is trained on
      (the raw outputs I_out_j by default, eq. 9-10; ``critic.input="composite"`` scores
      ``I_masked + M_r * I_out_j``; see ``steps.critic_input``).
  """
  return -jnp.mean(_scores(critic_fn, fake))


# ---- eq. 11 ----

TERMS = ("hole", "valid", "perceptual", "style", "ms_ssim", "adversarial")


def total_generator_loss(terms: Mapping[str, jnp.ndarray],
                         lambdas: Mapping[str, float] | Any) -> tuple[jnp.ndarray, dict]:
  """Weighted sum of eq. 11: ``sum_t lambda_t * term_t``.

  Args:
    terms: ``{name: scalar}``, names among :data:`TERMS` (others are allowed if ``lambdas``
      weighs them).
    lambdas: ``{name: weight}`` (a dict or an ml_collections ConfigDict). Every term needs a
      weight; a weight without its term is an error unless it is 0 (a disabled term).

  Returns:
    ``(total, terms)``: the scalar total and a copy of ``terms`` with ``"total"`` added (for
    logging).
  """
  if hasattr(lambdas, "to_dict"):
    lambdas = lambdas.to_dict()
  lambdas = dict(lambdas)
  if not terms:
    raise ValueError("total_generator_loss got no loss terms")
  missing = sorted(set(terms) - set(lambdas))
  if missing:
    raise ValueError(f"no lambda for loss term(s) {missing}; lambdas given: {sorted(lambdas)}")
  orphan = sorted(k for k, v in lambdas.items() if k not in terms and v != 0)
  if orphan:
    raise ValueError(f"lambda(s) {orphan} are non-zero but their terms were not computed; "
                     f"terms given: {sorted(terms)}")
  total = sum(lambdas[name] * jnp.asarray(value, jnp.float32) for name, value in terms.items())
  out = dict(terms)
  out["total"] = total
  return total, out


# ----------------------------------------------------------------------------------------------
# The coarse net (the paper's customised MLGN): MLGN's backward_G
# ----------------------------------------------------------------------------------------------

def smooth_l1(x: jax.Array, beta: float = 1.0) -> jax.Array:
  """Elementwise PyTorch ``SmoothL1Loss`` (beta 1): ``0.5 x^2 / beta`` if ``|x| < beta``."""
  ax = jnp.abs(x)
  return jnp.where(ax < beta, 0.5 * jnp.square(x) / beta, ax - 0.5 * beta)


def coarse_loss_terms(outputs: CoarseOutputs, i_gt: jax.Array, mask: jax.Array, *,
                      ms_ssim_weights: Sequence[float] = ssim_lib.MS_SSIM_WEIGHTS,
                      fake_scores: jax.Array | None = None) -> dict[str, jax.Array]:
  """The unweighted terms of MLGN's generator loss on the composite.

  With ``I_comp = I_gt * mask + hole * out`` (the reference's ``fake_B``):

  * ``rec``: ``SmoothL1(I_comp * hole, I_gt * hole)`` averaged over all N*H*W*3 values (PyTorch
    ``SmoothL1Loss()``, beta 1), i.e. the hole error weighted by the hole's share of the image;
  * ``ms_ssim``: ``1 - MS-SSIM((I_comp + 1) / 2, (I_gt + 1) / 2)``, data range 1, batch mean
    (pytorch-msssim ``MS_SSIM(data_range=1)``; ``ms_ssim_weights`` sets the scales);
  * ``adversarial``: ``-mean(fake_scores)`` when scores are given: the WGAN generator term of
    the project's critic (the reference uses an LSGAN critic; see ``coarse_loss``).

  Args:
    outputs: :class:`CoarseOutputs` of the coarse net.
    i_gt: (N, H, W, 3) ground truth in [-1, 1].
    mask: (N, H, W, 1), 1 = known, 0 = hole.
    ms_ssim_weights: MS-SSIM scale exponents, finest first (5 for 256 px, fewer for small
      images: the smaller side must exceed ``10 * 2 ** (scales - 1)``).
    fake_scores: critic scores (N,) of the composites, or None.

  Returns:
    ``{"rec", "ms_ssim"}`` (+ ``"adversarial"``) float32 scalars.
  """
  if i_gt.shape != outputs.full.shape:
    raise ValueError(f"coarse_loss: i_gt {i_gt.shape} and the coarse output "
                     f"{outputs.full.shape} differ")
  if mask.shape != i_gt.shape[:3] + (1,):
    raise ValueError(f"coarse_loss: mask must be (N, H, W, 1) matching i_gt; got {mask.shape}")
  mask = mask.astype(jnp.float32)
  hole = 1.0 - mask
  i_gt = i_gt.astype(jnp.float32)
  out = outputs.full.astype(jnp.float32)
  comp = i_gt * mask + hole * out
  terms = {
      "rec": jnp.mean(smooth_l1(comp * hole - i_gt * hole)),
      "ms_ssim": 1.0 - jnp.mean(ssim_lib.ms_ssim((comp + 1.0) * 0.5, (i_gt + 1.0) * 0.5,
                                                 data_range=1.0,
                                                 weights=tuple(ms_ssim_weights))),
  }
  if fake_scores is not None:
    terms["adversarial"] = -jnp.mean(fake_scores.astype(jnp.float32))
  return terms


def coarse_loss(outputs: CoarseOutputs, i_gt: jax.Array, mask: jax.Array, *,
                lambda_rec: float = 100.0, lambda_ms_ssim: float = 5.0,
                lambda_adv: float = 0.0,
                ms_ssim_weights: Sequence[float] = ssim_lib.MS_SSIM_WEIGHTS,
                fake_scores: jax.Array | None = None) -> jax.Array:
  """MLGN's generator loss with DiFAI's customised adversarial weight.

  ``lambda_rec * rec + lambda_ms_ssim * ms_ssim + lambda_adv * adversarial`` over the terms of
  :func:`coarse_loss_terms`. MLGN's ``backward_G`` reads
  ``5 * GAN + lambda_l1 * SmoothL1 + 5 * (1 - MS-SSIM)`` with ``lambda_l1`` commented as 100
  (its options file is not public). DiFAI customises the adversarial weight so that the coarse
  face stays blurry: ``lambda_adv`` 0 by default (MLGN: 5). When it is non-zero the project's
  WGAN-GP critic scores the composite and the term is ``-mean(D(composite))``, not MLGN's LSGAN.

  Args:
    outputs, i_gt, mask, ms_ssim_weights: as :func:`coarse_loss_terms`.
    lambda_rec, lambda_ms_ssim, lambda_adv: term weights.
    fake_scores: critic scores (N,) of the composites; required when ``lambda_adv != 0``.

  Returns:
    Scalar float32 loss.
  """
  if lambda_adv and fake_scores is None:
    raise ValueError("coarse_loss: lambda_adv is non-zero but no fake_scores were given")
  terms = coarse_loss_terms(outputs, i_gt, mask, ms_ssim_weights=ms_ssim_weights,
                            fake_scores=fake_scores if lambda_adv else None)
  total = lambda_rec * terms["rec"] + lambda_ms_ssim * terms["ms_ssim"]
  if lambda_adv:
    total = total + lambda_adv * terms["adversarial"]
  return total
