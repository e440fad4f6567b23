"""Layers shared by the networks: equalized Dense / Conv, upfirdn2d, modulated convolutions
(``layers``), parameter-free norms (``norms``), the K-variant batch layout (``variants``) and
the precision policy (``precision``)."""

import hashlib

import jax
import numpy as np


def parameter_count(tree) -> int:
  """Number of scalars in a pytree of arrays (or of ShapeDtypeStructs)."""
  return int(sum(np.prod(x.shape, dtype=np.int64) for x in jax.tree.leaves(tree)))


def fingerprint(tree) -> str:
  """SHA-256 (16 hex digits) of a variable tree's float32 values and paths in tree order: the
  same weights give the same string on any machine."""
  digest = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    digest.update(jax.tree_util.keystr(path).encode())
    digest.update(np.ascontiguousarray(np.asarray(leaf, np.float32)).tobytes())
  return digest.hexdigest()[:16]
