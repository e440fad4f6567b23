"""NVIDIA StyleGAN2-ADA generator (``network-snapshot-*.pkl``) -> the Flax StyleGAN2 Generator.

The pickle is read by :mod:`weights_conversion.nvidia_pickle` (no pickled code runs); this module
maps NVlabs/stylegan2-ada-pytorch's ``training/networks.py`` Generator (also the StyleGAN2
configs of NVlabs/stylegan3, ``networks_stylegan2.py``) onto ``models.stylegan2.Generator``,
which has rosinality's layout. The two compute the same function:

* mapping: ``normalize_2nd_moment`` is PixelNorm; ``FullyConnectedLayer`` scales its weight by
  ``lr_multiplier / sqrt(in)`` and its bias by ``lr_multiplier`` like ``EqualLinear``; lrelu
  gain sqrt(2) as the fused leaky ReLU. ``lr_mlp`` is read from the layers (``bias_gain``).
* synthesis layer: NVIDIA modulates the unscaled weight and demodulates it, so the 1/sqrt(fan_in)
  our conv applies cancels (it only rescales the 1e-8 epsilon); noise ``noise_const *
  noise_strength`` is added before bias + lrelu, then the ``conv_clamp`` clamp.
* ToRGB: ``affine(w) / sqrt(in)`` modulation, no demodulation, bias, clamp.
* up-sampling: transposed stride-2 conv then the [1, 3, 3, 1] filter (gain 4, pads 1, 1), and
  the RGB skip up-sampled with pads 2, 1: the pads rosinality's Blur / Upsample use.
* W+ indexing: b4 takes ws 0 (conv1) and 1 (torgb); block k >= 1 takes ws 2k - 1, 2k, 2k + 1,
  the same ws as rosinality's ``convs`` / ``to_rgbs``.

Key map (NVIDIA state dict -> Flax; conv weights OIHW -> HWIO, linear (out, in) -> (in, out))::

    mapping.fc{i}.weight / .bias             params/style/dense_{i}/kernel / bias
    mapping.w_avg (D,)                       constants/latent_avg (1, D): the truncation centre
    synthesis.b4.const (C, 4, 4)             params/input (1, 4, 4, C)
    synthesis.b4.{conv1,torgb}               params/{conv1,to_rgb1}
    synthesis.b{R}.{conv0,conv1,torgb}       params/{convs_{2k},convs_{2k+1},to_rgbs_{k}}
                                             (R = 8 * 2**k)
    *.weight (O, I, k, k)                    */conv/kernel (k, k, I, O)
    *.affine.weight / .bias                  */conv/modulation/kernel / bias
    *.noise_strength ()                      */noise_weight (1,)
    *.bias (O,)                              */bias
    *.noise_const (R, R)                     noises/noise_{j} (1, R, R, 1), j = layer index
    *.resample_filter (4, 4)                 checked against [1, 3, 3, 1], not stored
    conv_clamp (layer attribute)             config conv_clamp

Refused, each with a message: conditional generators (c_dim > 0), the 'orig' and 'resnet'
synthesis architectures, StyleGAN3 generators, img_channels != 3, z_dim != w_dim or mapping
widths != w_dim, activations other than lrelu, resampling filters other than [1, 3, 3, 1].
Layers NVIDIA ran in float16 (``num_fp16_res``) run in float32 here.
"""

from __future__ import annotations

import re

import numpy as np

from weights_conversion import nvidia_pickle
from weights_conversion import stylegan2_common
from weights_conversion import torch_io
from weights_conversion.nvidia_pickle import PersistentObject
from weights_conversion.torch_io import ConversionError, StateDict


_MAX_RESOLUTION = 4096


def _attr(node: PersistentObject, name: str, where: str):
  """A plain attribute of a network: a short string, a number in int32 range, a bool or None
  (anything else, from a hostile file, is refused before it reaches a message or a loop)."""
  if name not in node.state:
    raise ConversionError(f"{where} ({node.class_name}) has no attribute {name!r}; not a "
                          "StyleGAN2-ADA network")
  value = node.state[name]
  if not (value is None or (isinstance(value, str) and len(value) <= 64)
          or (isinstance(value, (int, float, np.number, np.bool_)) and abs(value) < 2 ** 31)):
    raise ConversionError(f"{where}.{name} is {torch_io.describe(value)}, not a short name or "
                          "a number in int32 range")
  return value


def _child(node: PersistentObject, name: str, where: str) -> PersistentObject:
  children = node.modules
  if name not in children:
    raise ConversionError(f"{where} ({node.class_name}) has no submodule {name!r} "
                          f"(it has {sorted(children)})")
  return children[name]


def _check_supported(G: PersistentObject, source: str) -> None:
  """Refuses, with the reason, the generators this converter cannot map."""
  if G.class_name != "Generator":
    raise ConversionError(f"{source} is a {G.class_name}, not a StyleGAN2 Generator")
  synthesis = _child(G, "synthesis", source)
  children = synthesis.modules
  if ("input" in children or any(re.fullmatch(r"L\d+_\d+_\d+", k) for k in children)
      or any(c.class_name == "SynthesisInput" for c in children.values())):
    raise ConversionError(f"{source} is a StyleGAN3 (alias-free) generator; its synthesis "
                          "network is not StyleGAN2's and cannot be converted")
  c_dim = int(_attr(G, "c_dim", source))
  if c_dim > 0:
    raise ConversionError(f"{source} is a conditional generator (c_dim = {c_dim}); only "
                          "unconditional ones (c_dim = 0) are supported")
  if int(_attr(G, "img_channels", source)) != 3:
    raise ConversionError(f"{source} makes {G.state['img_channels']}-channel images; only RGB "
                          "(img_channels = 3) is supported")
  for name, block in children.items():
    architecture = _attr(block, "architecture", f"{source}.synthesis.{name}")
    if architecture != "skip":
      raise ConversionError(
          f"{source}: synthesis block {name} uses architecture {architecture!r}; only 'skip' "
          "(StyleGAN2's generator, config-e/f and all ADA configs) is supported")


def _check_filter(sd: StateDict, key: str) -> None:
  want = stylegan2_common.fir_kernel(stylegan2_common.DEFAULT_BLUR, 1.0)
  got = sd.take(key)
  if got.shape != want.shape or not np.allclose(got, want, atol=1e-6):
    raise ConversionError(f"{sd.source}: {key} is not the [1, 3, 3, 1] resampling filter this "
                          "converter supports")


def _modulated(sd: StateDict, prefix: str) -> dict:
  return {"kernel": torch_io.conv_kernel(sd.take(f"{prefix}.weight")),
          "modulation": {"kernel": torch_io.dense_kernel(sd.take(f"{prefix}.affine.weight")),
                         "bias": sd.take(f"{prefix}.affine.bias")}}


def _check_affine(layer: PersistentObject, where: str) -> None:
  affine = _child(layer, "affine", where)
  if float(_attr(affine, "bias_gain", f"{where}.affine")) != 1.0:
    raise ConversionError(f"{where}.affine has an lr multiplier; expected 1")


def _synthesis_layer(sd: StateDict, layer: PersistentObject, prefix: str, size: int,
                     noises: list, clamps: set) -> dict:
  """A SynthesisLayer -> StyledConv params; appends its (1, R, R, 1) noise buffer and records
  its conv_clamp."""
  if _attr(layer, "activation", prefix) != "lrelu":
    raise ConversionError(f"{sd.source}: {prefix} uses activation {layer.state['activation']!r};"
                          " only lrelu is supported")
  _check_affine(layer, prefix)
  clamps.add(_attr(layer, "conv_clamp", prefix))
  out = {"conv": _modulated(sd, prefix), "bias": sd.take(f"{prefix}.bias")}
  if out["conv"]["kernel"].shape[:2] != (3, 3):
    raise ConversionError(f"{sd.source}: {prefix}.weight is not a 3x3 kernel")
  _check_filter(sd, f"{prefix}.resample_filter")
  if _attr(layer, "use_noise", prefix):
    out["noise_weight"] = sd.take(f"{prefix}.noise_strength", ()).reshape(1)
    noises.append(sd.take(f"{prefix}.noise_const", (size, size))[None, :, :, None])
  else:   # a generator trained without noise: zero strength, zero buffer
    out["noise_weight"] = np.zeros((1,), np.float32)
    noises.append(np.zeros((1, size, size, 1), np.float32))
  return out


def _to_rgb(sd: StateDict, layer: PersistentObject, prefix: str, clamps: set) -> dict:
  _check_affine(layer, prefix)
  clamps.add(_attr(layer, "conv_clamp", prefix))
  out = {"conv": _modulated(sd, prefix), "bias": sd.take(f"{prefix}.bias", (3,))}
  if out["conv"]["kernel"].shape[:2] != (1, 1):
    raise ConversionError(f"{sd.source}: {prefix}.weight is not a 1x1 kernel")
  return out


def _mapping(sd: StateDict, mapping: PersistentObject, w_dim: int) -> tuple[dict, float]:
  """MappingNetwork -> (params of ``style``, lr multiplier)."""
  where = f"{sd.source}.mapping"
  if "embed" in mapping.modules:
    raise ConversionError(f"{where} has a label embedding; only unconditional generators "
                          "are supported")
  n_mlp = int(_attr(mapping, "num_layers", where))
  params, lr_muls = {}, set()
  for i in range(n_mlp):
    fc = _child(mapping, f"fc{i}", where)
    if _attr(fc, "activation", f"{where}.fc{i}") != "lrelu":
      raise ConversionError(f"{where}.fc{i} uses activation {fc.state['activation']!r}; only "
                            "lrelu is supported")
    lr_muls.add(float(_attr(fc, "bias_gain", f"{where}.fc{i}")))
    params[f"dense_{i}"] = {
        "kernel": torch_io.dense_kernel(sd.take(f"mapping.fc{i}.weight", (w_dim, w_dim))),
        "bias": sd.take(f"mapping.fc{i}.bias", (w_dim,))}
  if len(lr_muls) != 1:
    raise ConversionError(f"{where}: the layers use different lr multipliers {sorted(lr_muls)}")
  return params, lr_muls.pop()


def convert_generator(G: PersistentObject, source: str = "G_ema", check: bool = True
                      ) -> tuple[dict, dict]:
  """Converts an NVIDIA StyleGAN2-ADA Generator tree; returns ``(config, variables)``.

  ``variables`` holds ``params``, ``noises`` (the ``noise_const`` buffers) and, when the
  network tracked it, ``constants/latent_avg`` (``w_avg``, which the Generator uses for
  truncation). ``check`` also verifies every tensor was used and the shapes against the module.
  """
  _check_supported(G, source)
  size = int(_attr(G, "img_resolution", source))
  z_dim, w_dim = int(_attr(G, "z_dim", source)), int(_attr(G, "w_dim", source))
  if z_dim != w_dim:
    raise ConversionError(f"{source}: z_dim {z_dim} != w_dim {w_dim}; this Generator maps z to "
                          "w of the same width")
  if size < 4 or size & (size - 1) or size > _MAX_RESOLUTION:
    raise ConversionError(f"{source}: img_resolution {size} is not a power of two in "
                          f"[4, {_MAX_RESOLUTION}]")
  sd = StateDict(nvidia_pickle.state_dict(G), source=source)
  synthesis = _child(G, "synthesis", source)
  style, lr_mlp = _mapping(sd, _child(G, "mapping", source), w_dim)

  # (C, 4, 4) -> (1, 4, 4, C)
  params = {"style": style, "input": np.transpose(sd.take("synthesis.b4.const"), (1, 2, 0))[None]}
  noises: list[np.ndarray] = []
  clamps: set = set()
  resolutions = [2 ** i for i in range(2, size.bit_length())]
  for k, r in enumerate(resolutions):
    block = _child(synthesis, f"b{r}", f"{source}.synthesis")
    where = f"synthesis.b{r}"
    names = ["conv1"] if r == 4 else ["conv0", "conv1"]
    convs = [_synthesis_layer(sd, _child(block, name, where), f"{where}.{name}", r, noises,
                              clamps) for name in names]
    to_rgb = _to_rgb(sd, _child(block, "torgb", where), f"{where}.torgb", clamps)
    _check_filter(sd, f"{where}.resample_filter")
    if r == 4:
      params["conv1"], params["to_rgb1"] = convs[0], to_rgb
    else:
      params[f"convs_{2 * k - 2}"], params[f"convs_{2 * k - 1}"] = convs
      params[f"to_rgbs_{k - 1}"] = to_rgb
  if len(clamps) != 1:
    raise ConversionError(f"{source}: the layers use different conv_clamp values {clamps}")
  conv_clamp = clamps.pop()

  variables = {"params": params,
               "noises": {f"noise_{i}": n for i, n in enumerate(noises)}}
  if "mapping.w_avg" in sd:
    variables["constants"] = {"latent_avg": sd.take("mapping.w_avg", (w_dim,))[None]}
  channels = [params["conv1"]["bias"].shape[0]]
  channels += [params[f"convs_{2 * k + 1}"]["bias"].shape[0] for k in range(len(resolutions) - 1)]
  config = {"size": size, "style_dim": w_dim, "n_mlp": len(style),
            "channels": [int(c) for c in channels],
            "blur_kernel": list(stylegan2_common.DEFAULT_BLUR),
            "lr_mlp": lr_mlp,
            "conv_clamp": None if conv_clamp is None else float(conv_clamp)}
  if check:
    sd.check_all_used()
    stylegan2_common.check_against_module(
        config, {k: v for k, v in variables.items() if k != "constants"})
  return config, variables


def convert_pickle(path: str, which: str = "g_ema", check: bool = True) -> tuple[dict, dict]:
  """Reads ``path`` safely and converts its ``G_ema`` (``which='g_ema'``) or ``G``.

  Every failure is a ConversionError (a hostile file's values of the wrong kind included);
  ``check=False`` skips the shape check against the Flax module (which needs jax).
  """
  keys = {"g_ema": "G_ema", "g": "G"}
  if which not in keys:
    raise ConversionError(f"--which {which}: from an NVIDIA pickle only the generators "
                          "(g_ema, g) can be converted; its discriminator is not supported")
  try:
    G, _, _ = nvidia_pickle.load_network(path, keys[which])
    return convert_generator(G, source=f"{path}[{keys[which]}]", check=check)
  except ConversionError:
    raise
  except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError,
          RecursionError, MemoryError) as e:   # values of the wrong kind in a hostile file
    raise ConversionError(f"{path}[{keys[which]}] is not a StyleGAN2-ADA generator this "
                          f"converter reads ({torch_io.brief(e)})") from None
