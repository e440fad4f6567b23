"""Converts an MLGN generator state dict (JieLiu95/MLGN) into a ``difai_jax.pretrained`` directory.

Usage::

    python -m weights_conversion.mlgn SRC.pth DST_DIR

``SRC.pth`` is the state dict of ``Models/models_gd.py``'s ``Generator`` as MLGN's
``save_network`` writes it (e.g. ``<epoch>_net_G.pth``); ``DST_DIR`` receives ``config.json``
(kind ``coarse``, ``floor_stride`` 16, the widths read from the tensors) and the Flax variables
of ``difai_jax.models.coarse.CoarseNet``.

Key map (PyTorch -> Flax, ``difai_jax.models.coarse``); each reference block is an
``nn.Sequential`` whose index picks the layer::

    <conv block>.1.{weight,bias}                 -> <block>/conv/{kernel,bias}
    <res stack>.<i>.resnetblock.{1,5}.*          -> <block>/res_<i>/conv_{0,1}/conv/*
    <conv+res>.1.*                               -> <block>/conv/conv/*
    <conv+res>.<4+i>.resnetblock.{1,5}.*         -> <block>/res_<i>/conv_{0,1}/conv/*
    <up>.0.{weight,bias}                         -> <block>/conv_t/{kernel,bias}
    conv_0_0.{1,5,9}.*                           -> conv_0_0/{conv_0,conv_1,to_rgb}/conv/*

Conv weights (O, I, kh, kw) become HWIO kernels. ``ConvTranspose2d`` weights (I, O, kh, kw)
become (kh, kw, I, O) kernels flipped in both spatial axes: Flax's ``ConvTranspose`` (with
``transpose_kernel=False``) correlates the stride-dilated input with its kernel as stored, PyTorch
with the flipped one. InstanceNorm2d has no parameters (affine=False, no running stats).
"""

from __future__ import annotations

import sys
from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from difai_jax.models import coarse
from weights_conversion import torch_io

# (reference block, block type, number of ResnetBlocks), in the reference's definition order.
BLOCKS = (
    ("down_0_0", "conv", 0), ("down_0_1", "conv", 0), ("down_0_2", "conv", 0),
    ("res_0_0", "res", 2), ("down_0_3", "conv", 0), ("res_0_1", "res", 3),
    ("up_0_3", "up", 0), ("conv_0_3", "conv_res", 1), ("up_0_2", "up", 0),
    ("conv_0_2", "conv_res", 1), ("up_0_1", "up", 0), ("conv_0_1", "conv_res", 2),
    ("up_0_0", "up", 0), ("conv_0_0", "head", 0),
    ("down_1_0", "conv", 0), ("conv_1_0", "conv", 0), ("res_1_0", "res", 3),
    ("up_1_0", "up", 0), ("conv_1_1", "conv_res", 1), ("up_1_1", "up", 0),
    ("conv_1_2", "conv_res", 1), ("up_1_2", "up", 0), ("conv_1_3", "conv_res", 1),
    ("down_2_0", "conv", 0), ("conv_2_0", "conv", 0), ("res_2_0", "res", 3),
    ("up_2_0", "up", 0), ("conv_2_1", "conv_res", 1), ("up_2_1", "up", 0),
    ("conv_2_2", "conv_res", 1), ("up_2_2", "up", 0), ("conv_2_3", "conv_res", 1),
)


def _conv(sd: torch_io.StateDict, key: str) -> dict:
  """``<key>.weight`` (O, I, kh, kw), ``<key>.bias`` -> ``{"kernel" (kh, kw, I, O), "bias"}``."""
  weight = sd.take(f"{key}.weight")
  bias = sd.take(f"{key}.bias", (weight.shape[0],))
  return {"kernel": torch_io.conv_kernel(weight).astype(np.float32),
          "bias": np.asarray(bias, np.float32)}


def _conv_transpose(sd: torch_io.StateDict, key: str) -> dict:
  """``ConvTranspose2d`` (I, O, kh, kw) -> Flax ``ConvTranspose`` kernel (kh, kw, I, O), flipped."""
  weight = sd.take(f"{key}.weight")
  if weight.ndim != 4:
    raise torch_io.ConversionError(f"{key}.weight: expected a 4-d weight, got {weight.shape}")
  bias = sd.take(f"{key}.bias", (weight.shape[1],))
  kernel = np.transpose(weight[:, :, ::-1, ::-1], (2, 3, 0, 1))
  return {"kernel": np.ascontiguousarray(kernel, np.float32),
          "bias": np.asarray(bias, np.float32)}


def _resnet_block(sd: torch_io.StateDict, key: str) -> dict:
  """``<key>.resnetblock.{1,5}`` (the two convs of MLGN's ResnetBlock)."""
  return {"conv_0": {"conv": _conv(sd, f"{key}.resnetblock.1")},
          "conv_1": {"conv": _conv(sd, f"{key}.resnetblock.5")}}


def conv_block(sd, name, _):
  return {"conv": _conv(sd, f"{name}.1")}


def res_block(sd, name, n):
  return {f"res_{i}": _resnet_block(sd, f"{name}.{i}") for i in range(n)}


def conv_res_block(sd, name, n):
  # Sequential(ReflectionPad2d, Conv2d, InstanceNorm2d, LeakyReLU, ResnetBlock...).
  out = {"conv": {"conv": _conv(sd, f"{name}.1")}}
  out.update({f"res_{i}": _resnet_block(sd, f"{name}.{4 + i}") for i in range(n)})
  return out


def up_block(sd, name, _):
  return {"conv_t": _conv_transpose(sd, f"{name}.0")}


def head_block(sd, name, _):
  # Sequential(pad, conv, IN, lrelu, pad, conv, IN, lrelu, pad, conv, tanh): convs at 1, 5, 9.
  return {"conv_0": {"conv": _conv(sd, f"{name}.1")},
          "conv_1": {"conv": _conv(sd, f"{name}.5")},
          "to_rgb": {"conv": _conv(sd, f"{name}.9")}}


CONVERTERS: dict[str, Callable[[torch_io.StateDict, str, int], dict]] = {
    "conv": conv_block, "res": res_block, "conv_res": conv_res_block, "up": up_block,
    "head": head_block,
}


def widths_of(state_dict: Mapping[str, np.ndarray]) -> tuple[int, int, int, int]:
  """The four channel counts (64, 128, 192, 256 in MLGN) read from the stem convs."""
  try:
    return tuple(int(np.shape(state_dict[f"down_0_{i}.1.weight"])[0]) for i in range(4))
  except KeyError as e:
    raise torch_io.ConversionError(
        f"not an MLGN Generator state dict: missing {e.args[0]!r}") from e


@torch_io.converter_command(kind="coarse",
                             src_help="MLGN Generator state dict, e.g. latest_net_G.pth")
def convert(state_dict: Mapping[str, np.ndarray],
            source: str = "MLGN generator state dict") -> tuple[dict, dict]:
  """Maps an MLGN ``Generator`` state dict (numpy arrays) to ``(config, variables)``.

  Returns:
    ``config`` (``{"widths": [...], "floor_stride": 16, "dtype": "float32"}``, without
    ``kind``) and ``variables = {"params": ...}`` of :class:`coarse.CoarseNet`.

  Raises:
    torch_io.ConversionError naming the key that is missing, mis-shaped, unused or unknown.
  """
  widths = widths_of(state_dict)
  sd = torch_io.StateDict(state_dict, source=source)
  params = {name: CONVERTERS[kind](sd, name, n) for name, kind, n in BLOCKS}
  sd.check_all_used()
  variables = {"params": params}
  config = {"widths": list(widths), "floor_stride": 16, "dtype": "float32"}
  module = coarse.from_config(config)
  size = 128   # the smallest input of floor_stride 16 (floor 2 at 2 px)
  expected = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, size, size, 3)),
                            jnp.ones((1, size, size, 1)))
  torch_io.check_shapes(variables, expected)
  return config, variables


main = convert.main

if __name__ == "__main__":
  sys.exit(main())
