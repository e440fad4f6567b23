"""Diversity of pluralistic completions: mean pairwise LPIPS (PIC's protocol).

Pluralistic Image Completion (PIC; Zheng et al., CVPR 2019) scores the diversity of a
multiple-output inpainting method by the average LPIPS distance between completions produced for
the *same* masked input: the larger, the more diverse. The DiFAI paper follows that protocol and
reports the mean over 4,000 pairs of completions of 1,000 test images (four pairs per image).

:func:`diversity_lpips` takes the K completions of each of N inputs and averages LPIPS over the
chosen pairs of each input, then over the inputs. By default every unordered pair (i < j) is used,
K(K-1)/2 per input; ``pairs`` selects others, e.g. ``[(0, 1), (2, 3), (4, 5), (6, 7)]`` with
K = 8 gives the paper's four disjoint pairs per image (4,000 pairs for 1,000 images). With
LPIPS' ``d(x, x) = 0`` and ``d(x, y) = d(y, x)``, identical completions score exactly 0 and the
score does not depend on the order of the completions (for all-pairs).

Call it per batch of inputs (the pairs are batched into one LPIPS call of P * N images).
Completions should be the composites ``I_masked + hole * I_out`` (known pixels identical), as in
evaluation; the score then measures variation inside the hole only.
"""

from __future__ import annotations

import itertools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp


def all_pairs(k: int) -> list[tuple[int, int]]:
  """Every unordered pair ``(i, j)``, ``i < j < k``."""
  return list(itertools.combinations(range(k), 2))


def diversity_lpips(lpips_fn: Callable[[jax.Array, jax.Array], jax.Array],
                    completions: jax.Array,
                    pairs: Sequence[tuple[int, int]] | None = None,
                    per_input: bool = False) -> jax.Array:
  """Mean pairwise LPIPS among the K completions of each input.

  Args:
    lpips_fn: ``(x, y) -> (N,)`` distance of two (N, H, W, 3) batches in [-1, 1], e.g.
      ``difai_jax.metrics.lpips.lpips_distance_fn(module, variables)``.
    completions: (K, N, H, W, 3) images in [-1, 1]; ``completions[k, n]`` is the k-th completion
      of input n. K >= 2.
    pairs: pairs of completion indices to compare (default: all K(K-1)/2 unordered pairs).
    per_input: return the (N,) per-input means instead of their mean.

  Returns:
    scalar float32 diversity (or (N,) with ``per_input=True``).
  """
  completions = jnp.asarray(completions)
  if completions.ndim != 5 or completions.shape[-1] != 3:
    raise ValueError(f"completions must be (K, N, H, W, 3), got shape {completions.shape}")
  k = completions.shape[0]
  if k < 2:
    raise ValueError(f"diversity needs at least 2 completions per input, got K={k}")
  pairs = all_pairs(k) if pairs is None else [tuple(p) for p in pairs]
  if not pairs:
    raise ValueError("no pairs to compare")
  for i, j in pairs:
    if not (0 <= i < k and 0 <= j < k) or i == j:
      raise ValueError(f"pair {(i, j)} is not two different completion indices in [0, {k})")
  # Batch the pairs: (P * N, H, W, 3) on each side, one LPIPS call.
  first = jnp.concatenate([completions[i] for i, _ in pairs], axis=0)
  second = jnp.concatenate([completions[j] for _, j in pairs], axis=0)
  d = jnp.asarray(lpips_fn(first, second), jnp.float32).reshape(len(pairs), -1)  # (P, N)
  per = jnp.mean(d, axis=0)  # (N,)
  return per if per_input else jnp.mean(per)
