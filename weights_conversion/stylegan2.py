"""rosinality StyleGAN2 checkpoint -> difai_jax converted model directory.

Usage::

    python -m weights_conversion.stylegan2 SRC.pt DST_DIR [--which g_ema|g] [--lr_mlp 0.01]

Reads a rosinality training checkpoint (``{"g", "d", "g_ema", "args"}``) or a bare generator
state dict, infers the architecture (size, style_dim, n_mlp, channel table) from tensor shapes,
converts every tensor (the stored noise buffers included) and writes ``DST_DIR/config.json`` +
the variables, which ``difai_jax.pretrained.load(DST_DIR)`` restores.

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
"""

from __future__ import annotations

import argparse
import re
import sys

import numpy as np

from weights_conversion import torch_io
from weights_conversion.torch_io import ConversionError, StateDict

_DEFAULT_BLUR = (1, 3, 3, 1)


def _fir_kernel(taps, gain):
  k = np.outer(np.asarray(taps, np.float32), np.asarray(taps, np.float32))
  return k / k.sum() * gain


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
          "channels": channels, "blur_kernel": list(_DEFAULT_BLUR), "lr_mlp": lr_mlp}


def _modulated_conv(sd: StateDict, prefix: str) -> dict:
  w = sd.take(f"{prefix}.weight")
  if w.ndim != 5 or w.shape[0] != 1:
    raise ConversionError(f"{sd.source}: {prefix}.weight has shape {w.shape}, expected "
                          "(1, out, in, k, k)")
  return {"kernel": torch_io.conv_kernel(w[0]),
          "modulation": {"kernel": torch_io.dense_kernel(sd.take(f"{prefix}.modulation.weight")),
                         "bias": sd.take(f"{prefix}.modulation.bias")}}


def _check_fir(sd: StateDict, key: str, gain: float) -> None:
  want = _fir_kernel(_DEFAULT_BLUR, gain)
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


def check_against_module(config: dict, variables: dict) -> None:
  """Raises ConversionError if ``variables`` do not fit the Flax Generator built from config."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from difai_jax.models import stylegan2  # pylint: disable=import-outside-toplevel
  module = stylegan2.from_config(config)
  z = jax.ShapeDtypeStruct((1, config["style_dim"]), jnp.float32)
  expected = jax.eval_shape(lambda z: module.init(jax.random.key(0), [z]), z)
  if "noises" not in variables:
    expected = {k: v for k, v in expected.items() if k != "noises"}
  torch_io.check_shapes(variables, expected)


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


def convert_file(src: str, dst: str, which: str = "g_ema", lr_mlp: float = 0.01) -> dict:
  """Converts ``src`` (.pt) and writes the model directory ``dst``; returns the config."""
  from difai_jax import pretrained  # pylint: disable=import-outside-toplevel
  checkpoint = torch_io.load_checkpoint(src)
  sd = StateDict(select_generator(checkpoint, which), source=f"{src}[{which}]")
  config, variables = convert_generator(sd, lr_mlp=lr_mlp)
  pretrained.save(dst, "stylegan2", config, variables)
  return config


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m weights_conversion.stylegan2",
      description="Convert a rosinality StyleGAN2 checkpoint to a difai_jax model directory.")
  parser.add_argument("src", help="rosinality .pt checkpoint (training checkpoint or state dict)")
  parser.add_argument("dst", help="output directory (must not hold a converted model yet)")
  parser.add_argument("--which", default="g_ema", choices=("g_ema", "g"),
                      help="which generator of a training checkpoint (default: g_ema)")
  parser.add_argument("--lr_mlp", type=float, default=0.01,
                      help="mapping-network lr multiplier the model was trained with "
                      "(not stored in checkpoints; rosinality's default is 0.01)")
  args = parser.parse_args(argv)
  try:
    config = convert_file(args.src, args.dst, args.which, args.lr_mlp)
  except (ConversionError, FileNotFoundError, FileExistsError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(f"converted {args.src} [{args.which}] -> {args.dst}: size {config['size']}, "
        f"style_dim {config['style_dim']}, n_mlp {config['n_mlp']}, channels {config['channels']}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
