"""rosinality StyleGAN2 checkpoint (or NVIDIA StyleGAN2-ADA pickle) -> converted model directory.

Usage::

    python -m weights_conversion.stylegan2 SRC.pt DST_DIR [--which g_ema|g|d] [--lr_mlp 0.01]
    python -m weights_conversion.stylegan2 network-snapshot.pkl DST_DIR [--which g_ema|g]

A file that is not a ``torch.save`` checkpoint is read as NVIDIA's network pickle, safely (no
pickled code runs; ``nvidia_pickle``), and its generator mapped by ``nvidia_stylegan2``.

Reads a rosinality training checkpoint (``{"g", "d", "g_ema", "args"}``) or a bare generator or
discriminator state dict, infers the architecture (size, style_dim, n_mlp, channel table) from
tensor shapes, converts every tensor (the stored noise buffers included) and writes
``DST_DIR/config.json`` + the variables, which ``difai_jax.pretrained.load(DST_DIR)`` restores
(kind ``stylegan2`` for a generator, ``stylegan2_discriminator`` for ``--which d``).

Key map (PyTorch -> Flax; conv weights OIHW -> HWIO, linear (out, in) -> (in, out))::

    style.{i+1}.weight / .bias              params/style/dense_{i}/kernel / bias
    input.input (1, C, 4, 4)                params/input (1, 4, 4, C)
    {conv1,convs.N}.conv.weight (1,O,I,3,3) params/{conv1,convs_N}/conv/kernel (3, 3, I, O)
    {...}.conv.modulation.weight / .bias    params/{...}/conv/modulation/kernel / bias
    {...}.noise.weight (1,)                 params/{...}/noise_weight
    {...}.activate.bias (O,)                params/{...}/bias
    {to_rgb1,to_rgbs.N}.conv.*              params/{to_rgb1,to_rgbs_N}/conv/*
    {to_rgb1,to_rgbs.N}.bias (1, 3, 1, 1)   params/{...}/bias (3,)
    noises.noise_{i} (1, 1, H, W)           noises/noise_{i} (1, H, W, 1)
    *.blur.kernel, *.upsample.kernel        checked against the [1,3,3,1] filter, not stored

Discriminator key map (``--which d``; ConvLayer = [Blur,] EqualConv2d[, FusedLeakyReLU])::

    convs.0.0.weight / convs.0.1.bias       params/convs_0/conv/kernel / bias
    convs.{i}.conv1.0.weight / .1.bias      params/convs_{i}/conv1/conv/kernel / bias
    convs.{i}.conv2.1.weight / .2.bias      params/convs_{i}/conv2/conv/kernel / bias
    convs.{i}.skip.1.weight                 params/convs_{i}/skip/conv/kernel (no bias)
    convs.{i}.{conv2,skip}.0.kernel         checked against the [1,3,3,1] filter, not stored
    final_conv.0.weight / final_conv.1.bias params/final_conv/conv/kernel / bias
    final_linear.0.weight (O, C*4*4)        params/final_linear_0/kernel (4*4*C, O): rows
                                            permuted from NCHW (c, h, w) to NHWC (h, w, c) order
    final_linear.{0,1}.bias                 params/final_linear_{0,1}/bias
    final_linear.1.weight (1, O)            params/final_linear_1/kernel (O, 1)
"""

from __future__ import annotations

import os
import re
import sys
import zipfile

import numpy as np

from difai_jax import pretrained
from weights_conversion import nvidia_stylegan2
from weights_conversion import torch_io
from weights_conversion.stylegan2_common import check_against_module
from weights_conversion.stylegan2_common import check_discriminator_against_module
from weights_conversion.stylegan2_common import DEFAULT_BLUR
from weights_conversion.stylegan2_common import fir_kernel
from weights_conversion.torch_io import ConversionError, StateDict


def infer_config(sd: StateDict, lr_mlp: float = 0.01) -> dict:
  """Architecture fields of ``models.stylegan2.Generator`` from a state dict's shapes."""
  keys = list(sd.keys())
  if "input.input" not in sd:
    raise ConversionError(f"{sd.source}: no 'input.input' key; not a rosinality StyleGAN2 "
                          "generator state dict")
  mlp = sorted(int(m.group(1)) for k in keys if (m := re.fullmatch(r"style\.(\d+)\.weight", k)))
  if not mlp:
    raise ConversionError(f"{sd.source}: no mapping layers 'style.N.weight' found")
  n_rgbs = len({m.group(1) for k in keys if (m := re.match(r"to_rgbs\.(\d+)\.", k))})
  size = 2 ** (n_rgbs + 2)
  channels = [sd.shape("input.input")[1]]
  channels += [sd.shape(f"convs.{2 * i}.conv.weight")[1] for i in range(n_rgbs)]
  return {"size": size, "style_dim": sd.shape("style.1.weight")[0], "n_mlp": len(mlp),
          "channels": channels, "blur_kernel": list(DEFAULT_BLUR), "lr_mlp": lr_mlp}


def _modulated_conv(sd: StateDict, prefix: str) -> dict:
  w = sd.take(f"{prefix}.weight")
  if w.ndim != 5 or w.shape[0] != 1:
    raise ConversionError(f"{sd.source}: {prefix}.weight has shape {w.shape}, expected "
                          "(1, out, in, k, k)")
  return {"kernel": torch_io.conv_kernel(w[0]),
          "modulation": {"kernel": torch_io.dense_kernel(sd.take(f"{prefix}.modulation.weight")),
                         "bias": sd.take(f"{prefix}.modulation.bias")}}


def _check_fir(sd: StateDict, key: str, gain: float) -> None:
  """Takes FIR buffer ``key`` and checks it is the [1, 3, 3, 1] filter times ``gain``."""
  want = fir_kernel(DEFAULT_BLUR, gain)
  got = sd.take(key, want.shape)
  if not np.allclose(got, want, atol=1e-6):
    raise ConversionError(f"{sd.source}: {key} is not the [1, 3, 3, 1] blur filter this "
                          "converter supports")


def _styled_conv(sd: StateDict, prefix: str, upsample: bool) -> dict:
  out = {"conv": _modulated_conv(sd, f"{prefix}.conv"),
         "noise_weight": sd.take(f"{prefix}.noise.weight", (1,)),
         "bias": sd.take(f"{prefix}.activate.bias")}
  if upsample:
    _check_fir(sd, f"{prefix}.conv.blur.kernel", 4.0)
  return out


def _to_rgb(sd: StateDict, prefix: str, upsample: bool) -> dict:
  out = {"conv": _modulated_conv(sd, f"{prefix}.conv"),
         "bias": sd.take(f"{prefix}.bias", (1, 3, 1, 1)).reshape(3)}
  if upsample:
    _check_fir(sd, f"{prefix}.upsample.kernel", 4.0)
  return out


def convert_generator(sd: StateDict, lr_mlp: float = 0.01, check: bool = True
                      ) -> tuple[dict, dict]:
  """Converts a rosinality generator state dict; returns ``(config, variables)``.

  ``check`` also verifies the result against ``jax.eval_shape`` of the Flax Generator and that
  every source tensor was used.
  """
  config = infer_config(sd, lr_mlp)
  n_blocks = len(config["channels"]) - 1
  params = {
      "style": {f"dense_{i}": {"kernel": torch_io.dense_kernel(sd.take(f"style.{i + 1}.weight")),
                               "bias": sd.take(f"style.{i + 1}.bias")}
                for i in range(config["n_mlp"])},
      "input": np.transpose(sd.take("input.input"), (0, 2, 3, 1)),
      "conv1": _styled_conv(sd, "conv1", upsample=False),
      "to_rgb1": _to_rgb(sd, "to_rgb1", upsample=False),
  }
  for i in range(2 * n_blocks):
    params[f"convs_{i}"] = _styled_conv(sd, f"convs.{i}", upsample=(i % 2 == 0))
  for i in range(n_blocks):
    params[f"to_rgbs_{i}"] = _to_rgb(sd, f"to_rgbs.{i}", upsample=True)
  noises = {}
  for i in range(2 * n_blocks + 1):
    key = f"noises.noise_{i}"
    if key in sd:
      noises[f"noise_{i}"] = np.transpose(sd.take(key), (0, 2, 3, 1))
  if noises and len(noises) != 2 * n_blocks + 1:
    raise ConversionError(f"{sd.source}: found {len(noises)} of {2 * n_blocks + 1} noise buffers")
  variables = {"params": params}
  if noises:
    variables["noises"] = noises
  if check:
    sd.check_all_used()
    check_against_module(config, variables)
  return config, variables


# ---- Discriminator ----

_D_KIND = "stylegan2_discriminator"


def infer_discriminator_config(sd: StateDict) -> dict:
  """Architecture fields of ``models.stylegan2.Discriminator`` from a state dict's shapes."""
  for key in ("convs.0.0.weight", "final_conv.0.weight", "final_linear.0.weight"):
    if key not in sd:
      raise ConversionError(f"{sd.source}: no {key!r} key; not a rosinality StyleGAN2 "
                            "discriminator state dict")
  n_blocks = len({m.group(1) for k in sd.keys() if (m := re.match(r"convs\.(\d+)\.conv1\.", k))})
  # widths[j] is the width at resolution 4 * 2**j; ResBlock i (1-based) maps size / 2**(i-1)
  # to size / 2**i, so its output width is widths[n_blocks - i].
  widths = [sd.shape(f"convs.{i}.conv2.1.weight")[0] for i in range(n_blocks, 0, -1)]
  widths.append(sd.shape("convs.0.0.weight")[0])
  stddev_feat = sd.shape("final_conv.0.weight")[1] - widths[0]
  if stddev_feat < 1:
    raise ConversionError(f"{sd.source}: final_conv.0.weight has {stddev_feat + widths[0]} "
                          f"input channels for a {widths[0]}-wide 4x4 map; expected at least "
                          "one minibatch-stddev channel more")
  return {"size": 2 ** (n_blocks + 2), "channels": widths, "blur_kernel": list(DEFAULT_BLUR),
          "stddev_group": 4, "stddev_feat": stddev_feat}


def _conv_layer(sd: StateDict, prefix: str, downsample: bool, use_bias: bool = True,
                activate: bool = True) -> dict:
  """A rosinality ``ConvLayer`` (nn.Sequential: [Blur,] EqualConv2d[, FusedLeakyReLU])."""
  i = 0
  if downsample:
    _check_fir(sd, f"{prefix}.0.kernel", 1.0)
    i = 1
  out = {"conv": {"kernel": torch_io.conv_kernel(sd.take(f"{prefix}.{i}.weight"))}}
  if use_bias and activate:
    out["bias"] = sd.take(f"{prefix}.{i + 1}.bias")
  elif use_bias:
    out["conv"]["bias"] = sd.take(f"{prefix}.{i}.bias")
  return out


def convert_discriminator(sd: StateDict, stddev_group: int = 4, check: bool = True
                          ) -> tuple[dict, dict]:
  """Converts a rosinality discriminator state dict; returns ``(config, variables)``.

  ``stddev_group`` is not stored in checkpoints (rosinality uses 4). ``check`` also verifies
  the result against ``jax.eval_shape`` of the Flax Discriminator and that every source tensor
  was used.
  """
  config = infer_discriminator_config(sd)
  config["stddev_group"] = stddev_group
  n_blocks = len(config["channels"]) - 1
  params = {"convs_0": _conv_layer(sd, "convs.0", downsample=False)}
  for i in range(1, n_blocks + 1):
    params[f"convs_{i}"] = {
        "conv1": _conv_layer(sd, f"convs.{i}.conv1", downsample=False),
        "conv2": _conv_layer(sd, f"convs.{i}.conv2", downsample=True),
        "skip": _conv_layer(sd, f"convs.{i}.skip", downsample=True, use_bias=False,
                            activate=False),
    }
  params["final_conv"] = _conv_layer(sd, "final_conv", downsample=False)
  w = sd.take("final_linear.0.weight")
  c4 = config["channels"][0]
  if w.shape[1] != c4 * 16:
    raise ConversionError(f"{sd.source}: final_linear.0.weight has shape {w.shape}, expected "
                          f"(out, {c4 * 16}) for a {c4}-wide 4x4 map")
  # (O, C*4*4) read in NCHW order (c, h, w) -> (4*4*C, O) read in NHWC order (h, w, c).
  w = np.transpose(w.reshape(w.shape[0], c4, 4, 4), (2, 3, 1, 0)).reshape(16 * c4, w.shape[0])
  params["final_linear_0"] = {"kernel": np.ascontiguousarray(w),
                              "bias": sd.take("final_linear.0.bias")}
  params["final_linear_1"] = {
      "kernel": torch_io.dense_kernel(sd.take("final_linear.1.weight")),
      "bias": sd.take("final_linear.1.bias", (1,))}
  variables = {"params": params}
  if check:
    sd.check_all_used()
    check_discriminator_against_module(config, variables)
  return config, variables


def select_discriminator(checkpoint: dict) -> dict:
  """The discriminator state dict of a rosinality checkpoint (or the checkpoint itself)."""
  if "final_linear.0.weight" in checkpoint:
    return checkpoint
  if "d" not in checkpoint:
    raise ConversionError(f"checkpoint has no 'd' entry (top-level keys: {sorted(checkpoint)})")
  return checkpoint["d"]


def select_generator(checkpoint: dict, which: str = "g_ema") -> dict:
  """The generator state dict inside a rosinality checkpoint (or the checkpoint itself)."""
  if "input.input" in checkpoint:
    return checkpoint
  if which not in ("g_ema", "g"):
    raise ValueError(f"--which must be g_ema or g, got {which!r}")
  if which not in checkpoint:
    raise ConversionError(f"checkpoint has no {which!r} entry (top-level keys: "
                          f"{sorted(checkpoint)})")
  return checkpoint[which]


def is_torch_checkpoint(path: str) -> bool:
  """True for ``torch.save`` files (zip, or the legacy layout that starts with the pickled
  magic number), False for other pickles such as NVIDIA's ``network-snapshot-*.pkl``."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"checkpoint file not found: {path}")
  if zipfile.is_zipfile(path):
    return True
  with open(path, "rb") as f:
    return f.read(4) == b"\x80\x02\x8a\x0a"   # PROTO 2, LONG1 of 10 bytes: the magic number


def convert_file(src: str, dst: str, which: str = "g_ema", lr_mlp: float = 0.01,
                 stddev_group: int = 4) -> dict:
  """Converts ``src`` (rosinality .pt, or NVIDIA .pkl: generators only, ``lr_mlp`` read from
  the pickle) and writes the model directory ``dst``; returns the config."""
  if not is_torch_checkpoint(src):
    config, variables = nvidia_stylegan2.convert_pickle(src, which)
    pretrained.save(dst, "stylegan2", config, variables)
    return config
  checkpoint = torch_io.load_checkpoint(src)
  if which == "d":
    sd = StateDict(select_discriminator(checkpoint), source=f"{src}[d]")
    config, variables = convert_discriminator(sd, stddev_group=stddev_group)
    pretrained.save(dst, _D_KIND, config, variables)
    return config
  sd = StateDict(select_generator(checkpoint, which), source=f"{src}[{which}]")
  config, variables = convert_generator(sd, lr_mlp=lr_mlp)
  pretrained.save(dst, "stylegan2", config, variables)
  return config


def main(argv=None) -> int:
  parser = torch_io.converter_parser(
      "stylegan2", "Convert a rosinality StyleGAN2 checkpoint or an NVIDIA StyleGAN2-ADA network "
      "pickle to a difai_jax model directory.",
      "rosinality .pt checkpoint (training checkpoint or state dict) "
                      "or NVIDIA network-snapshot .pkl (read without running pickled code)")
  parser.add_argument("--which", default="g_ema", choices=("g_ema", "g", "d"),
                      help="which network of a training checkpoint: a generator (g_ema, the "
                      "default, or g) or the discriminator (d)")
  parser.add_argument("--lr_mlp", type=float, default=0.01,
                      help="mapping-network lr multiplier the model was trained with "
                      "(not stored in rosinality checkpoints; its default is 0.01; NVIDIA "
                      "pickles store theirs)")
  parser.add_argument("--stddev_group", type=int, default=4,
                      help="discriminator minibatch-stddev group size (not stored in "
                      "checkpoints; rosinality's is 4)")
  args = parser.parse_args(argv)
  try:
    config = convert_file(args.src, args.dst, args.which, args.lr_mlp, args.stddev_group)
  except (ConversionError, FileNotFoundError, FileExistsError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError,
          RecursionError, MemoryError) as e:   # a checkpoint holding values of the wrong kind
    print(f"error: could not convert {args.src}: {torch_io.brief(e)}", file=sys.stderr)
    return 1
  if args.which == "d":
    print(f"converted {args.src} [d] -> {args.dst}: size {config['size']}, "
          f"channels {config['channels']}")
    return 0
  clamp = f", conv_clamp {config['conv_clamp']}" if config.get("conv_clamp") else ""
  print(f"converted {args.src} [{args.which}] -> {args.dst}: size {config['size']}, "
        f"style_dim {config['style_dim']}, n_mlp {config['n_mlp']}, channels {config['channels']}"
        f"{clamp}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
