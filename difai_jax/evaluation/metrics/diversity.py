"""Diversity of pluralistic completions: mean pairwise LPIPS (PIC's protocol).

Pluralistic Image Completion (PIC; Zheng et al., CVPR 2019) scores the diversity of a
multiple-output inpainting method by the average LPIPS distance between completions produced for
the *same* masked input: the larger, the more diverse. DiFAI (Yoon et al., section 3.3, Table 2)
follows that protocol on the completions of the perturbed codes w_delta: "the diversity score is
calculated between 4K pairs synthesized from a sampling of 1K images", i.e. four pairs per test
image, never involving completion 0 (the unperturbed code w, which Table 1 scores).

:func:`diversity_lpips` takes the K completions of each of N inputs and averages LPIPS over the
chosen pairs of each input, then over the inputs. ``pairs`` is either one list of index pairs for
every input (default: every unordered pair ``i < j``, K(K-1)/2 per input, ``evaluate
--diversity_pairs all``) or an (N, P, 2) array of pairs per input, e.g. from
:func:`paper_pairs` (four seeded pairs among completions 1..K-1 per input). With LPIPS'
``d(x, x) = 0`` and ``d(x, y) = d(y, x)``, identical completions score exactly 0 and all-pairs
does not depend on the order of the completions.

Call it per batch of inputs (the pairs are batched into one LPIPS call of P * N images).
Completions should be the composites ``I_masked + hole * I_out`` (known pixels identical), as in
evaluation; the score then measures variation inside the hole only.
"""

from __future__ import annotations

import itertools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp

PAPER_PAIRS_PER_IMAGE = 4      # "4K pairs ... from a sampling of 1K images" (Yoon et al., 3.3)
PAPER_IMAGES = 1000


def all_pairs(k: int) -> list[tuple[int, int]]:
  """Every unordered pair ``(i, j)``, ``i < j < k``."""
  return list(itertools.combinations(range(k), 2))


def perturbed_pairs(k: int) -> list[tuple[int, int]]:
  """Every unordered pair among the perturbed completions ``1 .. k-1`` (completion 0 excluded)."""
  return list(itertools.combinations(range(1, k), 2))


def paper_pairs(keys: jax.Array, k: int,
                num_pairs: int = PAPER_PAIRS_PER_IMAGE) -> jax.Array:
  """``num_pairs`` pairs of perturbed completions per input, drawn with that input's key.

  Args:
    keys: (N,) PRNG keys, one per input (e.g. folded from the seed and the test image's index,
      so an image gets the same pairs whatever its batch).
    k: completions per input, K >= 3 (at least two perturbed ones).
    num_pairs: pairs per input; distinct pairs when ``(K-1)(K-2)/2 >= num_pairs``, else drawn
      with replacement.

  Returns:
    (N, num_pairs, 2) int32 completion indices, each in ``[1, k)``, ``i < j``.
  """
  candidates = perturbed_pairs(k)
  if not candidates:
    raise ValueError(f"diversity among the perturbed completions needs K >= 3, got K={k}")
  table = jnp.asarray(candidates, jnp.int32)                         # (C, 2)
  replace = len(candidates) < num_pairs
  draw = lambda key: jax.random.choice(key, len(candidates), (num_pairs,), replace=replace)
  return table[jax.vmap(draw)(keys)]                                 # (N, P, 2)


def diversity_lpips(lpips_fn: Callable[[jax.Array, jax.Array], jax.Array],
                    completions: jax.Array,
                    pairs: Sequence[tuple[int, int]] | jax.Array | None = None,
                    per_input: bool = False) -> jax.Array:
  """Mean pairwise LPIPS among the K completions of each input.

  Args:
    lpips_fn: ``(x, y) -> (N,)`` distance of two (N, H, W, 3) batches in [-1, 1], e.g.
      ``difai_jax.evaluation.metrics.lpips.lpips_distance_fn(module, variables)``.
    completions: (K, N, H, W, 3) images in [-1, 1]; ``completions[k, n]`` is the k-th completion
      of input n. K >= 2.
    pairs: pairs of completion indices to compare: a list of P pairs used for every input
      (default: all K(K-1)/2 unordered pairs) or an (N, P, 2) integer array, pairs per input.
    per_input: return the (N,) per-input means instead of their mean.

  Returns:
    scalar float32 diversity (or (N,) with ``per_input=True``).
  """
  completions = jnp.asarray(completions)
  if completions.ndim != 5 or completions.shape[-1] != 3:
    raise ValueError(f"completions must be (K, N, H, W, 3), got shape {completions.shape}")
  k, n = completions.shape[:2]
  if k < 2:
    raise ValueError(f"diversity needs at least 2 completions per input, got K={k}")
  if pairs is None or not hasattr(pairs, "ndim"):
    pairs = all_pairs(k) if pairs is None else [tuple(p) for p in pairs]
    if not pairs:
      raise ValueError("no pairs to compare")
    for i, j in pairs:
      if not (0 <= i < k and 0 <= j < k) or i == j:
        raise ValueError(f"pair {(i, j)} is not two different completion indices in [0, {k})")
    pairs = jnp.broadcast_to(jnp.asarray(pairs, jnp.int32), (n, len(pairs), 2))
  if pairs.ndim != 3 or pairs.shape[0] != n or pairs.shape[2] != 2:
    raise ValueError(f"pairs per input must be (N={n}, P, 2), got shape {pairs.shape}")
  p = pairs.shape[1]
  # Batch the pairs: (P * N, H, W, 3) on each side, one LPIPS call.
  inputs = jnp.broadcast_to(jnp.arange(n), (p, n))                  # (P, N)
  first = completions[pairs[:, :, 0].T, inputs].reshape((p * n,) + completions.shape[2:])
  second = completions[pairs[:, :, 1].T, inputs].reshape((p * n,) + completions.shape[2:])
  d = jnp.asarray(lpips_fn(first, second), jnp.float32).reshape(p, n)  # (P, N)
  per = jnp.mean(d, axis=0)  # (N,)
  return per if per_input else jnp.mean(per)
