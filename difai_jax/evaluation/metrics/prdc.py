"""Precision, recall, density and coverage of generated samples (Naeem et al., ICML 2020,
"Reliable Fidelity and Diversity Metrics for Generative Models"; the reference is their ``prdc``
package).

Each set of features defines a manifold: the union of balls around its samples whose radius is
the distance to the sample's k-th nearest neighbour in its own set (itself excluded).

* precision: the share of fake samples inside the real manifold (Kynkaanniemi et al. 2019);
* recall: the share of real samples inside the fake manifold;
* density: how many real balls contain each fake sample, averaged and divided by k (can exceed
  1; ~1 when the two distributions match);
* coverage: the share of real samples whose ball contains at least one fake sample.

Distances are Euclidean in float64. Real features are the test images', fake ones the scored
completions'; on the toy domain the toy recognizer's features stand in for Inception's.
"""

from __future__ import annotations

import numpy as np

NEAREST_K = 5   # Naeem et al.'s default


def pairwise_distances(x, y) -> np.ndarray:
  """(N, M) Euclidean distances between the rows of x (N, D) and y (M, D), float64."""
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  squared = (np.sum(x * x, axis=1)[:, None] + np.sum(y * y, axis=1)[None, :] - 2.0 * x @ y.T)
  return np.sqrt(np.maximum(squared, 0.0))


def nearest_neighbour_radii(features, k: int) -> np.ndarray:
  """(N,) distance of each row to its k-th nearest other row (the row itself excluded)."""
  d = pairwise_distances(features, features)
  # The row's own distance (0) is the smallest; the k-th neighbour is the (k + 1)-th smallest.
  return np.partition(d, k, axis=1)[:, k]


def prdc(real_features, fake_features, k: int = NEAREST_K) -> dict[str, float]:
  """``{"precision", "recall", "density", "coverage"}`` of (N, D) real and (M, D) fake features.

  Raises:
    ValueError: a set with k rows or fewer (no k-th neighbour), or feature sizes that differ.
  """
  real = np.asarray(real_features)
  fake = np.asarray(fake_features)
  if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
    raise ValueError(f"PRDC needs (N, D) and (M, D) features; got {real.shape} and {fake.shape}")
  if min(len(real), len(fake)) <= k:
    raise ValueError(f"PRDC with k = {k} needs more than {k} real and fake samples; got "
                     f"{len(real)} and {len(fake)}")
  real_radii = nearest_neighbour_radii(real, k)                       # (N,)
  fake_radii = nearest_neighbour_radii(fake, k)                       # (M,)
  d = pairwise_distances(real, fake)                                  # (N, M)
  inside_real = d < real_radii[:, None]                               # fake j in real ball i
  return {"precision": float(inside_real.any(axis=0).mean()),
          "recall": float((d < fake_radii[None, :]).any(axis=1).mean()),
          "density": float(inside_real.sum(axis=0).mean() / k),
          "coverage": float((d.min(axis=1) < real_radii).mean())}
