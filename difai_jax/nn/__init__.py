"""Layers shared by the networks: equalized Dense / Conv, upfirdn2d, modulated convolutions
(``layers``), parameter-free norms (``norms``), the K-variant batch layout (``variants``) and
the precision policy (``precision``)."""

import jax
import numpy as np


def parameter_count(tree) -> int:
  """Number of scalars in a pytree of arrays (or of ShapeDtypeStructs)."""
  return int(sum(np.prod(x.shape, dtype=np.int64) for x in jax.tree.leaves(tree)))
