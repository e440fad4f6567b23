"""Converts pytorch-fid's FID Inception weights to Flax.

Source: the state dict ``pt_inception-2015-12-05-6726825d.pth`` that pytorch-fid loads into its
``fid_inception_v3()`` (the TensorFlow FID graph ported to torchvision's Inception-v3 layout).
Its keys are ``{unit}.conv.weight`` and ``{unit}.bn.{weight,bias,running_mean,running_var}`` for
every conv unit (``Conv2d_1a_3x3``, ``Mixed_5b.branch1x1``, ..., ``Mixed_7c.branch_pool``), plus
the 1008-way classifier ``fc.{weight,bias}``, which the FID features do not use and which is
skipped on purpose (as are ``*.num_batches_tracked`` counters, if present).

Usage::

    python -m weights_conversion.inception pt_inception-2015-12-05-6726825d.pth DST_DIR

The result loads with ``difai_jax.pretrained.load(DST_DIR)`` as
:class:`difai_jax.evaluation.metrics.fid.FIDInceptionV3`; the Flax tree mirrors the PyTorch names:
``params/{unit}/conv/kernel`` (HWIO), ``params/{unit}/bn/{scale,bias}`` and
``batch_stats/{unit}/bn/{mean,var}``.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from difai_jax import pretrained
from difai_jax.evaluation.metrics import fid as fid_lib
from weights_conversion import torch_io

# Tensors of the source that the pool3 features do not use.
IGNORED = ("fc.weight", "fc.bias", "*.num_batches_tracked")


def expected_variables(resize_input: bool = True):
  """Shapes of the Flax variables (``jax.eval_shape``; nothing is computed)."""
  module = fid_lib.FIDInceptionV3(resize_input=resize_input)
  x = jax.ShapeDtypeStruct((1, fid_lib.FID_SIZE, fid_lib.FID_SIZE, 3), jnp.float32)
  return jax.eval_shape(lambda a: module.init(jax.random.key(0), a), x)


def conv_units(tree: Mapping[str, Any], path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
  """Paths of every BasicConv2d (a dict holding ``conv`` and ``bn``) in a params tree."""
  if "conv" in tree and "bn" in tree:
    return [path]
  units = []
  for name, sub in tree.items():
    if isinstance(sub, Mapping):
      units += conv_units(sub, path + (name,))
  return units


def convert_unit(sd: torch_io.StateDict, prefix: str, kernel_shape: tuple[int, ...]):
  """One BasicConv2d: returns (params, batch_stats) for the Flax unit at torch name ``prefix``."""
  kh, kw, c_in, c_out = kernel_shape
  kernel = torch_io.conv_kernel(sd.take(f"{prefix}.conv.weight", (c_out, c_in, kh, kw)))
  params = {"conv": {"kernel": kernel},
            "bn": {"scale": sd.take(f"{prefix}.bn.weight", (c_out,)),
                   "bias": sd.take(f"{prefix}.bn.bias", (c_out,))}}
  stats = {"bn": {"mean": sd.take(f"{prefix}.bn.running_mean", (c_out,)),
                  "var": sd.take(f"{prefix}.bn.running_var", (c_out,))}}
  return params, stats


def _set(tree: dict, path: tuple[str, ...], value: Any) -> None:
  for name in path[:-1]:
    tree = tree.setdefault(name, {})
  tree[path[-1]] = value


def convert_state_dict(tensors: Mapping[str, np.ndarray], source: str = "state dict") -> dict:
  """pytorch-fid Inception state dict (name -> array) -> Flax ``{"params", "batch_stats"}``."""
  sd = torch_io.StateDict(tensors, source=source, ignore=IGNORED)
  expected = expected_variables()
  params, batch_stats = {}, {}
  for path in conv_units(expected["params"]):
    node = expected["params"]
    for name in path:
      node = node[name]
    unit_params, unit_stats = convert_unit(sd, ".".join(path), node["conv"]["kernel"].shape)
    _set(params, path, unit_params)
    _set(batch_stats, path, unit_stats)
  sd.check_all_used()
  variables = jax.tree.map(lambda a: np.asarray(a, np.float32),
                           {"params": params, "batch_stats": batch_stats})
  torch_io.check_shapes(variables, expected)
  return variables


def convert(src: str | os.PathLike) -> dict:
  """Reads ``pt_inception-2015-12-05-*.pth`` and returns the Flax variables."""
  src = os.fspath(src)
  return convert_state_dict(torch_io.load_checkpoint(src), source=src)


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(
      prog="python -m weights_conversion.inception",
      description="Convert pytorch-fid's FID Inception (pt_inception-2015-12-05) to Flax.")
  parser.add_argument("src", metavar="SRC.pth", help="pt_inception-2015-12-05-6726825d.pth")
  parser.add_argument("dst", metavar="DST_DIR", help="output directory (must not hold a model)")
  args = parser.parse_args(argv)
  try:
    variables = convert(args.src)
  except (torch_io.ConversionError, FileNotFoundError) as e:
    parser.exit(2, f"error: {e}\n")
  pretrained.save(args.dst, "inception",
                  {"resize_input": True, "source": os.path.basename(args.src)}, variables)
  print(f"wrote the FID Inception to {os.path.abspath(args.dst)}")


if __name__ == "__main__":
  main(sys.argv[1:])
