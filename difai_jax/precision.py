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

Compute dtypes (``config.<network>.dtype = "bfloat16"``) are a separate, per-network choice:
they halve activation memory as well; params and optimizer state stay float32 either way.
"""

from __future__ import annotations

import contextlib

import jax

POLICIES = ("highest", "float32", "high", "tensorfloat32", "default", "bfloat16")


def check(policy: str) -> str:
  if policy not in POLICIES:
    raise ValueError(f"precision must be one of {', '.join(POLICIES)}; got {policy!r}")
  return policy


def scope(policy: str | None) -> contextlib.AbstractContextManager:
  """A context in which every jit traced uses ``policy`` (None: leave the current one)."""
  if policy is None:
    return contextlib.nullcontext()
  return jax.default_matmul_precision(check(policy))
