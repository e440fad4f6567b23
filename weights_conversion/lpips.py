"""Converts LPIPS weights (torchvision backbone + the ``lpips`` package's linear layers) to Flax.

LPIPS needs two PyTorch files, converted into one directory of kind ``"lpips"``:

* ``--backbone``: a torchvision ``alexnet()`` or ``vgg16()`` state dict (keys
  ``features.{i}.weight`` and ``features.{i}.bias``; the ``classifier.*`` tensors are not used by
  LPIPS and are skipped);
* ``--linear``: the ``lpips`` package's ``weights/v0.1/{alex,vgg}.pth`` (keys
  ``lin{l}.model.1.weight`` of shape (1, C_l, 1, 1)). When left out, the file shipped inside an
  installed ``lpips`` package is used (a local file; nothing is downloaded).

Usage::

    python -m weights_conversion.lpips --net alex --backbone alexnet.pth [--linear alex.pth] DST_DIR

The result loads with ``difai_jax.pretrained.load(DST_DIR)`` as
:class:`difai_jax.evaluation.metrics.lpips.LPIPS`. Layout:
``params/backbone/features_{i}/{kernel,bias}`` (torchvision index ``i``, HWIO kernels) and
``params/lin{l}`` of shape (C_l,).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from difai_jax import pretrained
from difai_jax.evaluation.metrics import lpips as lpips_lib
from weights_conversion import torch_io


def convert_backbone(sd: torch_io.StateDict, net: str) -> dict:
  """torchvision ``features.{i}.{weight,bias}`` -> ``{"features_{i}": {"kernel", "bias"}}``."""
  spec = lpips_lib.backbone_spec(net)
  params = {}
  for i, (c_in, c_out, k) in spec.conv_shapes().items():
    weight = sd.take(f"features.{i}.weight", (c_out, c_in, k, k))
    bias = sd.take(f"features.{i}.bias", (c_out,))
    params[f"features_{i}"] = {"kernel": torch_io.conv_kernel(weight), "bias": bias}
  return params


def convert_linear(sd: torch_io.StateDict, net: str) -> dict:
  """lpips ``lin{l}.model.1.weight`` (1, C, 1, 1) -> ``{"lin{l}": (C,)}``."""
  spec = lpips_lib.backbone_spec(net)
  return {f"lin{l}": sd.take(f"lin{l}.model.1.weight", (1, c, 1, 1)).reshape(c)
          for l, c in enumerate(spec.channels)}


def default_linear_path(net: str) -> str | None:
  """The linear-layer file shipped inside the installed ``lpips`` package, if any."""
  found = importlib.util.find_spec("lpips")
  if found is None or not found.submodule_search_locations:
    return None
  for root in found.submodule_search_locations:
    path = os.path.join(root, "weights", "v0.1", f"{net}.pth")
    if os.path.isfile(path):
      return path
  return None


def expected_variables(net: str):
  """Shapes of the Flax variables (``jax.eval_shape``; nothing is computed)."""
  module = lpips_lib.LPIPS(net=net)
  x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
  return jax.eval_shape(lambda a: module.init(jax.random.key(0), a, a), x)


def convert(backbone_path: str, linear_path: str, net: str = "alex") -> dict:
  """Reads both PyTorch files and returns the Flax variables ``{"params": ...}``."""
  lpips_lib.backbone_spec(net)
  backbone = torch_io.StateDict(torch_io.load_checkpoint(backbone_path),
                                source=f"{backbone_path} (torchvision {net} backbone)",
                                ignore=("classifier.*",))
  linear = torch_io.StateDict(torch_io.load_checkpoint(linear_path),
                              source=f"{linear_path} (lpips linear layers)")
  params = {"backbone": convert_backbone(backbone, net), **convert_linear(linear, net)}
  backbone.check_all_used()
  linear.check_all_used()
  params = jax.tree.map(lambda a: np.asarray(a, np.float32), params)
  variables = {"params": params}
  torch_io.check_shapes(variables, expected_variables(net))
  return variables


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(
      prog="python -m weights_conversion.lpips",
      description="Convert LPIPS (torchvision backbone + lpips linear layers) to a Flax directory.")
  parser.add_argument("dst", metavar="DST_DIR", help="output directory (must not hold a model)")
  parser.add_argument("--net", choices=sorted(lpips_lib.BACKBONES), default="alex",
                      help="backbone (default: alex, as the lpips package)")
  parser.add_argument("--backbone", required=True,
                      help="torchvision alexnet / vgg16 state dict (.pth, keys features.*)")
  parser.add_argument("--linear", default=None,
                      help="lpips linear layers, e.g. lpips/weights/v0.1/alex.pth "
                           "(default: the file shipped in the installed lpips package)")
  args = parser.parse_args(argv)
  linear = args.linear
  if linear is None:
    linear = default_linear_path(args.net)
    if linear is None:
      parser.error("--linear not given and no installed lpips package ships "
                   f"weights/v0.1/{args.net}.pth; pass the linear-layer file explicitly")
    print(f"note: --linear not given; using the lpips package's file {linear}")
  try:
    variables = convert(args.backbone, linear, args.net)
  except (torch_io.ConversionError, FileNotFoundError) as e:
    parser.exit(2, f"error: {e}\n")
  pretrained.save(args.dst, "lpips", {"net": args.net, "version": "0.1"}, variables)
  print(f"wrote LPIPS ({args.net}) to {os.path.abspath(args.dst)}")


if __name__ == "__main__":
  main(sys.argv[1:])
