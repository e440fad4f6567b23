"""Closed-form factorization of latent semantics (SeFa, Shen & Zhou 2021) for StyleGAN2.

The modulation layers map a style vector w to per-channel scales ``A w``. Directions n that
change those scales most, ``argmax ||A n||`` with ``||n|| = 1``, are the leading eigenvectors of
``A^T A``. DiFAI (section 3.2, eq. 3) moves the pSp code of the coarse completion along them to
get diverse style images: ``W+_i = W+ + d_i n_i``.

Two forms, both in ``jnp``:
  * ``"genforce"`` (default, the SeFa paper's code): stack the modulation weights of its
    ``layer_idx='all'`` set (every conv layer and the last ToRGB) transposed to
    (style_dim, out), L2-normalise every column, eigendecompose ``W W^T``;
  * ``"rosinality"`` (stylegan2-pytorch's ``closed_form_factorization.py``): stack the
    (out, style_dim) weights of every modulation outside ``to_rgbs`` (this set includes
    ``to_rgb1``) and take the right singular vectors.
Directions are rows of a (style_dim, style_dim) array sorted by decreasing eigen/singular value;
each is defined up to sign.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

METHODS = ("genforce", "rosinality")


@dataclasses.dataclass(frozen=True)
class Factorization:
  """SeFa result: ``directions`` (K, style_dim) unit rows, ``values`` (K,) descending."""
  directions: jax.Array
  values: jax.Array
  layers: tuple[str, ...]
  method: str


def _layer_order(name: str) -> tuple[int, int]:
  if name == "conv1":
    return (0, 0)
  if name == "to_rgb1":
    return (0, 1)
  kind, idx = re.fullmatch(r"(convs|to_rgbs)_(\d+)", name).groups()
  return (1 if kind == "convs" else 2, int(idx))


def modulation_weights(params: Mapping, layers: str | Sequence[str] = "conv"
                       ) -> dict[str, jax.Array]:
  """Modulation kernels (style_dim, out) of the generator's layers, in synthesis order.

  Args:
    params: the StyleGAN2 Generator's ``params`` collection.
    layers: ``"all"`` (genforce's ``layer_idx='all'``: conv1, every ``convs_i`` and the last
      ToRGB), ``"conv"`` (the conv layers only), ``"rosinality"`` (the conv layers and
      ``to_rgb1``), ``"every"`` (every modulated layer) or explicit names (a list, or one
      comma-separated string).
  """
  names = [k for k in params if re.fullmatch(r"conv1|to_rgb1|(convs|to_rgbs)_\d+", k)]
  names.sort(key=_layer_order)
  convs = [n for n in names if not n.startswith("to_rgb")]
  if isinstance(layers, str) and "," in layers:
    layers = [n.strip() for n in layers.split(",") if n.strip()]
  if layers == "all":
    chosen = convs + [names[-1]] if names[-1].startswith("to_rgb") else convs
  elif layers == "conv":
    chosen = convs
  elif layers == "rosinality":
    chosen = [n for n in names if not n.startswith("to_rgbs")]
  elif layers == "every":
    chosen = names
  elif isinstance(layers, str) and layers not in names:
    raise ValueError(f"layers must be 'all', 'conv', 'rosinality', 'every' or layer names "
                     f"(comma-separated) among {names}, got {layers!r}")
  else:
    layers = [layers] if isinstance(layers, str) else layers
    missing = [n for n in layers if n not in names]
    if missing:
      raise ValueError(f"unknown modulated layers {missing}; available: {names}")
    chosen = list(layers)
  return {n: params[n]["conv"]["modulation"]["kernel"] for n in chosen}


def factorize(params: Mapping, method: str = "genforce",
              layers: str | Sequence[str] | None = None) -> Factorization:
  """Closed-form factorization of the generator's modulation weights.

  Args:
    params: StyleGAN2 ``params``.
    method: ``"genforce"`` or ``"rosinality"`` (see the module docstring).
    layers: which modulations (default, also for None or "": ``"all"`` for genforce,
      ``"rosinality"`` for rosinality).
  """
  if method not in METHODS:
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")
  if not layers:
    layers = "all" if method == "genforce" else "rosinality"
  kernels = modulation_weights(params, layers)
  # (style_dim, sum of out widths)
  w = jnp.concatenate([jnp.asarray(k, jnp.float32) for k in kernels.values()], axis=1)
  if method == "genforce":
    w = w / jnp.linalg.norm(w, axis=0, keepdims=True)
    values, vectors = jnp.linalg.eigh(w @ w.T)       # ascending
    order = jnp.argsort(-values)
    values, directions = values[order], vectors[:, order].T
  else:
    _, values, vh = jnp.linalg.svd(w.T, full_matrices=False)   # descending
    directions = vh
  return Factorization(directions, values, tuple(kernels), method)


def move(latent: jax.Array, direction: jax.Array, degree, layers: Sequence[int] | None = None,
         n_latent: int | None = None) -> jax.Array:
  """``latent + degree * direction`` (eq. 3), on all or chosen W+ layers.

  Args:
    latent: w (N, D) or W+ (N, L, D).
    direction: (D,) unit direction (a row of ``Factorization.directions``), or (N, 1, D): one
      per sample.
    degree: scalar or (N,) array of step sizes (a python number takes the latent's dtype).
    layers: W+ layer indices to move; None moves every layer. A w latent is first broadcast to
      W+ (then ``n_latent`` is required).
  """
  degree = jnp.asarray(degree, jnp.result_type(latent, degree))
  if layers is None:
    shape = (-1,) + (1,) * (latent.ndim - 1) if degree.ndim else ()
    return latent + jnp.reshape(degree, shape) * direction
  if latent.ndim == 2:
    if n_latent is None:
      raise ValueError("moving chosen layers of a w latent needs n_latent to build W+")
    latent = jnp.repeat(latent[:, None], n_latent, axis=1)
  select = jnp.zeros((latent.shape[1], 1), latent.dtype).at[jnp.asarray(layers)].set(1.0)
  step = jnp.reshape(degree, (-1, 1, 1)) if degree.ndim else degree
  return latent + step * select * direction


def save(path: str | os.PathLike, factorization: Factorization) -> None:
  """Writes the factorization to ``path`` (.npz), atomically."""
  path = os.fspath(path)
  tmp = path + ".tmp.npz"
  np.savez(tmp, directions=np.asarray(factorization.directions),
           values=np.asarray(factorization.values), layers=np.asarray(factorization.layers),
           method=np.asarray(factorization.method))
  os.replace(tmp, path)


def load(path: str | os.PathLike) -> Factorization:
  with np.load(os.fspath(path)) as f:
    return Factorization(jnp.asarray(f["directions"]), jnp.asarray(f["values"]),
                         tuple(str(x) for x in f["layers"]), str(f["method"]))


def cached(path: str | os.PathLike, params: Mapping, method: str = "genforce",
           layers: str | Sequence[str] | None = None) -> Factorization:
  """Loads the factorization from ``path`` or computes and stores it there (once per workdir).

  A cache made with another method is refused rather than silently reused.
  """
  if os.path.exists(path):
    result = load(path)
    wanted = tuple(modulation_weights(params, layers or (
        "all" if method == "genforce" else "rosinality")))
    if result.method != method or result.layers != wanted:
      raise ValueError(f"{path} holds SeFa directions of method {result.method!r} over "
                       f"{list(result.layers)}; the config asks for {method!r} over "
                       f"{list(wanted)}; delete the file to recompute")
    return result
  result = factorize(params, method, layers)
  save(path, result)
  return result
