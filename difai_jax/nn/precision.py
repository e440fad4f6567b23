"""One precision policy for every conv and dot of every network.

No layer hard-codes a precision: each passes ``precision=None``, so the whole program follows
``jax.default_matmul_precision``, set once per run from ``config.precision`` (train) or
``--precision`` (evaluate, inpaint) through :func:`scope`:

- ``"highest"`` (= ``"float32"``): full float32 passes everywhere. The parity tests run this
  (tests/conftest.py), and evaluate defaults to it so that metric numbers match the PyTorch
  packages on every accelerator.
- ``"default"``: the backend's fastest float32 matmul: one bfloat16 pass on TPU, TF32 on
  NVIDIA GPUs since Ampere, exact float32 on CPU. The training configs use it.
- ``"high"`` / ``"tensorfloat32"`` / ``"bfloat16"``: the intermediate settings JAX offers.

Compute dtypes are a separate, per-network choice: ``config.<network>.dtype`` for the trained
networks (coarse, generator, critic) and ``config.pretrained.dtype.<kind>`` for the frozen pSp
and VGG-19 (applied by :func:`with_dtype` when they are loaded). ``"bfloat16"`` halves activation
memory as well and is the only way to compute in bfloat16 on CPU, where the matmul policy is
ignored; params and optimizer state stay float32 either way (each layer casts its params to
the compute dtype) and the networks return float32. What bfloat16 costs in accuracy:
``benchmarks/precision_tolerance.py``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

POLICIES = ("highest", "float32", "high", "tensorfloat32", "default", "bfloat16")
DTYPES = ("float32", "bfloat16")


def check(policy: str) -> str:
  if policy not in POLICIES:
    raise ValueError(f"precision must be one of {', '.join(POLICIES)}; got {policy!r}")
  return policy


def scope(policy: str | None) -> contextlib.AbstractContextManager:
  """A context in which every jit traced uses ``policy`` (None: leave the current one)."""
  if policy is None:
    return contextlib.nullcontext()
  return jax.default_matmul_precision(check(policy))


def with_dtype(module: nn.Module, dtype: Any) -> nn.Module:
  """A copy of ``module`` computing in ``dtype``: its ``dtype`` field and those of the modules it
  holds as fields (pSp's encoder and decoder) are set; its variables are used as they are.

  For networks built from a converted directory (``pretrained.load``), whose ``config.json``
  describes the architecture only.
  """
  name = dtype if isinstance(dtype, str) else jnp.dtype(dtype).name
  if name not in DTYPES:
    raise ValueError(f"compute dtype must be one of {', '.join(DTYPES)}; got {name!r}")
  changes = {}
  for field in dataclasses.fields(module):
    value = getattr(module, field.name, None)
    if field.name == "dtype":
      changes["dtype"] = jnp.dtype(name)
    elif field.name not in ("parent", "name") and isinstance(value, nn.Module):
      changes[field.name] = with_dtype(value, name)
  return module.clone(**changes)
