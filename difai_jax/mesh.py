"""The device mesh every jitted program runs over: one ``data`` axis (batch split, parameters
replicated), over every device of every host for training, over one host's devices for
evaluation and inference."""

from __future__ import annotations

import os

import jax


def maybe_initialize_distributed(coordinator: str | None = None, num_processes: int | None = None,
                                 process_id: int | None = None) -> None:
  """``jax.distributed.initialize`` for multi-process launches; a no-op on one host."""
  if coordinator:
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id)
  elif len(os.environ.get("TPU_WORKER_HOSTNAMES", "").split(",")) > 1 or os.environ.get(
      "JAX_COORDINATOR_ADDRESS"):
    jax.distributed.initialize()   # TPU pod slices / cluster environments auto-detect


def make_mesh(devices=None) -> jax.sharding.Mesh:
  """A 1-d mesh with axis ``data`` over every device of every host (GSPMD ``Auto`` axis: the
  compiler propagates the batch sharding through the model). ``devices``: another set, e.g.
  the compile-only devices of a TPU topology (``benchmarks.tpu_compile``)."""
  n = jax.device_count() if devices is None else len(devices)
  return jax.make_mesh((n,), ("data",), axis_types=(jax.sharding.AxisType.Auto,),
                       devices=devices)


def local_mesh() -> jax.sharding.Mesh:
  """A 1-d mesh, axis ``data``, over every local device (one host's evaluation / inference)."""
  return make_mesh(jax.local_devices())


def round_up(n: int, multiple: int) -> int:
  """The smallest multiple of ``multiple`` >= ``n`` (a batch padded to the mesh)."""
  return -(-int(n) // int(multiple)) * int(multiple)
