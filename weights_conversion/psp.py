"""pixel2style2pixel checkpoint -> difai_jax converted model directory.

Usage::

    python -m weights_conversion.psp SRC.pt DST_DIR

``SRC.pt`` is either

* a pSp checkpoint (e.g. ``psp_ffhq_encode.pt``): ``{"state_dict": {"encoder.*", "decoder.*"},
  "latent_avg": (n_styles, 512) or (512,), "opts": dict}``, written as kind ``"psp"``
  (``difai_jax.models.psp.PSP``); or
* the bare IR-SE50 face-recognition backbone pSp initialises its encoder from
  (``model_ir_se50.pth``: ``input_layer.*``, ``body.N.*``, ``output_layer.*``), written as kind
  ``"ir_se_backbone"`` (``difai_jax.models.psp.IRBackbone``) for training a new encoder; merge it
  with ``difai_jax.models.psp.init_encoder_from_backbone``. Its ``output_layer.*`` (the
  recognition head) is ignored, as pSp ignores it.

Files are read with ``torch.load(weights_only=True)`` (``weights_conversion.torch_io``). The
architecture (unit counts, widths, SE or not, number of styles, style width, input size) is
inferred from tensor shapes and checked against ``opts``.

Key map (PyTorch -> Flax; conv OIHW -> HWIO, linear (out, in) -> (in, out)); ``E`` is
``params/encoder``, ``S`` is ``batch_stats/encoder``, ``B`` is ``backbone``; a BatchNorm maps
``weight, bias -> params .../scale, bias`` and ``running_mean, running_var -> batch_stats
.../mean, var`` (``num_batches_tracked`` is dropped)::

    encoder.input_layer.0.weight            E/B/input_conv/kernel
    encoder.input_layer.1.*  (BatchNorm)    E|S/B/input_bn
    encoder.input_layer.2.weight (C,)       E/B/input_prelu/slope
    encoder.body.N.res_layer.0.* (BN)       E|S/B/body_N/bn1
    encoder.body.N.res_layer.1.weight       E/B/body_N/conv1/kernel
    encoder.body.N.res_layer.2.weight       E/B/body_N/prelu/slope
    encoder.body.N.res_layer.3.weight       E/B/body_N/conv2/kernel
    encoder.body.N.res_layer.4.* (BN)       E|S/B/body_N/bn2
    encoder.body.N.res_layer.5.fc1.weight   E/B/body_N/se/fc1/kernel (C, C/r)   (IR-SE only)
    encoder.body.N.res_layer.5.fc2.weight   E/B/body_N/se/fc2/kernel (C/r, C)
    encoder.body.N.shortcut_layer.0.weight  E/B/body_N/shortcut_conv/kernel     (width change)
    encoder.body.N.shortcut_layer.1.* (BN)  E|S/B/body_N/shortcut_bn
    encoder.styles.J.convs.{2k}.weight/bias E/styles_J/conv_k/kernel, bias
    encoder.styles.J.linear.weight/bias     E/styles_J/linear/kernel, bias  (EqualLinear)
    encoder.latlayer{1,2}.weight/bias       E/latlayer{1,2}/kernel, bias
    decoder.*                               params/decoder/*, noises/decoder/*
                                            (weights_conversion.stylegan2)
    latent_avg (n_styles, D) or (D,)        constants/latent_avg (n_styles, D)
"""

from __future__ import annotations

import re
import sys
from typing import Any, Mapping

import numpy as np

from weights_conversion import stylegan2 as stylegan2_conversion
from weights_conversion import torch_io
from weights_conversion.torch_io import ConversionError, StateDict

# pSp's GradualStyleEncoder layout of styles: coarse [0, 3), middle [3, 7), fine [7, n).
_COARSE_IND, _MIDDLE_IND = 3, 7
_BACKBONE_IGNORED = ("output_layer.*", "*.num_batches_tracked")


def _batch_norm(sd: StateDict, prefix: str, width: int) -> tuple[dict, dict]:
  params = {"scale": sd.take(f"{prefix}.weight", (width,)),
            "bias": sd.take(f"{prefix}.bias", (width,))}
  stats = {"mean": sd.take(f"{prefix}.running_mean", (width,)),
           "var": sd.take(f"{prefix}.running_var", (width,))}
  return params, stats


def _conv(sd: StateDict, prefix: str, shape=None, bias: bool = False) -> dict:
  out = {"kernel": torch_io.conv_kernel(sd.take(f"{prefix}.weight", shape))}
  if bias:
    out["bias"] = sd.take(f"{prefix}.bias", (shape[0],) if shape else None)
  return out


def _indices(keys, pattern: str) -> list[int]:
  found = {int(m.group(1)) for k in keys if (m := re.match(pattern, k))}
  n = len(found)
  if found != set(range(n)):
    raise ConversionError(f"non-contiguous indices for {pattern!r}: {sorted(found)}")
  return list(range(n))


def infer_backbone_config(sd: StateDict, prefix: str = "") -> dict:
  """IRBackbone fields (unit counts, widths, input width, mode, SE reduction) from shapes."""
  if f"{prefix}input_layer.0.weight" not in sd:
    raise ConversionError(f"{sd.source}: no {prefix}input_layer.0.weight; not an IR / IR-SE "
                          "(pSp encoder or model_ir_se50.pth) state dict")
  units = _indices(sd.keys(), re.escape(prefix) + r"body\.(\d+)\.")
  if not units:
    raise ConversionError(f"{sd.source}: no {prefix}body.N units found")
  depths = [sd.shape(f"{prefix}body.{i}.res_layer.1.weight")[0] for i in units]
  # A stage starts at unit 0 and wherever the width changes (pSp's get_blocks).
  unit_counts, widths = [], []
  for d in depths:
    if widths and d == widths[-1]:
      unit_counts[-1] += 1
    else:
      widths.append(d)
      unit_counts.append(1)
  se = [f"{prefix}body.{i}.res_layer.5.fc1.weight" in sd for i in units]
  if any(se) != all(se):
    raise ConversionError(f"{sd.source}: only some units have SE modules (res_layer.5)")
  config = {"unit_counts": unit_counts, "widths": widths,
            "input_width": sd.shape(f"{prefix}input_layer.0.weight")[0],
            "mode": "ir_se" if all(se) else "ir", "se_reduction": 16}
  if all(se):
    hidden = sd.shape(f"{prefix}body.0.res_layer.5.fc1.weight")[0]
    config["se_reduction"] = depths[0] // hidden
    for i, d in zip(units, depths):
      got = sd.shape(f"{prefix}body.{i}.res_layer.5.fc1.weight")[0]
      if got != d // config["se_reduction"]:
        raise ConversionError(f"{sd.source}: body.{i} SE width {got} does not follow reduction "
                              f"{config['se_reduction']} of width {d}")
  return config


def convert_backbone_tensors(sd: StateDict, config: dict, prefix: str = "",
                             input_nc: int = 3) -> tuple[dict, dict]:
  """Input layer + body -> (params, batch_stats) of ``IRBackbone``."""
  params, stats = {}, {}
  w0 = config["input_width"]
  params["input_conv"] = _conv(sd, f"{prefix}input_layer.0", (w0, input_nc, 3, 3))
  params["input_bn"], stats["input_bn"] = _batch_norm(sd, f"{prefix}input_layer.1", w0)
  params["input_prelu"] = {"slope": sd.take(f"{prefix}input_layer.2.weight", (w0,))}
  in_c, i = w0, 0
  for count, depth in zip(config["unit_counts"], config["widths"]):
    for _ in range(count):
      p = f"{prefix}body.{i}"
      unit_p, unit_s = {}, {}
      if in_c != depth:
        unit_p["shortcut_conv"] = _conv(sd, f"{p}.shortcut_layer.0", (depth, in_c, 1, 1))
        unit_p["shortcut_bn"], unit_s["shortcut_bn"] = _batch_norm(
            sd, f"{p}.shortcut_layer.1", depth)
      unit_p["bn1"], unit_s["bn1"] = _batch_norm(sd, f"{p}.res_layer.0", in_c)
      unit_p["conv1"] = _conv(sd, f"{p}.res_layer.1", (depth, in_c, 3, 3))
      unit_p["prelu"] = {"slope": sd.take(f"{p}.res_layer.2.weight", (depth,))}
      unit_p["conv2"] = _conv(sd, f"{p}.res_layer.3", (depth, depth, 3, 3))
      unit_p["bn2"], unit_s["bn2"] = _batch_norm(sd, f"{p}.res_layer.4", depth)
      if config["mode"] == "ir_se":
        hidden = depth // config["se_reduction"]
        fc1 = sd.take(f"{p}.res_layer.5.fc1.weight", (hidden, depth, 1, 1))
        fc2 = sd.take(f"{p}.res_layer.5.fc2.weight", (depth, hidden, 1, 1))
        unit_p["se"] = {"fc1": {"kernel": torch_io.dense_kernel(fc1[:, :, 0, 0])},
                        "fc2": {"kernel": torch_io.dense_kernel(fc2[:, :, 0, 0])}}
      params[f"body_{i}"], stats[f"body_{i}"] = unit_p, unit_s
      in_c, i = depth, i + 1
  return params, stats


def convert_encoder(sd: StateDict, prefix: str = "encoder.") -> tuple[dict, dict, dict]:
  """pSp GradualStyleEncoder tensors -> (encoder config, variables, extra).

  ``variables`` = ``{"params": ..., "batch_stats": ...}`` of ``GradualStyleEncoder``; ``extra``
  holds ``input_size`` (implied by the number of convs of the style blocks: log2 of c3's side)
  and ``input_nc``.
  """
  config = infer_backbone_config(sd, prefix)
  if len(config["unit_counts"]) != 4:
    raise ConversionError(f"{sd.source}: the encoder has {len(config['unit_counts'])} stages "
                          f"(widths {config['widths']}); the GradualStyleEncoder needs 4")
  input_nc = sd.shape(f"{prefix}input_layer.0.weight")[1]
  backbone_p, backbone_s = convert_backbone_tensors(sd, config, prefix, input_nc)
  styles = _indices(sd.keys(), re.escape(prefix) + r"styles\.(\d+)\.")
  if not styles:
    raise ConversionError(f"{sd.source}: no {prefix}styles.J blocks: not a GradualStyleEncoder "
                          "(pSp's other encoder types are not supported)")
  style_dim = sd.shape(f"{prefix}styles.0.linear.weight")[0]
  width = config["widths"][-1]
  params: dict[str, Any] = {"backbone": backbone_p}
  n_convs = []
  for j in styles:
    pattern = re.escape(f"{prefix}styles.{j}.convs.") + r"(\d+)\.weight$"
    convs = sorted(int(m.group(1)) for k in sd.keys() if (m := re.match(pattern, k)))
    block = {}
    in_c = width
    # nn.Sequential numbering: convs at even indices, LeakyReLU (no tensors) at odd ones.
    for k, c in enumerate(convs):
      if c != 2 * k:
        raise ConversionError(f"{sd.source}: unexpected conv index styles.{j}.convs.{c}")
      block[f"conv_{k}"] = _conv(sd, f"{prefix}styles.{j}.convs.{c}", (style_dim, in_c, 3, 3),
                                 bias=True)
      in_c = style_dim
    block["linear"] = {
        "kernel": torch_io.dense_kernel(
            sd.take(f"{prefix}styles.{j}.linear.weight", (style_dim, style_dim))),
        "bias": sd.take(f"{prefix}styles.{j}.linear.bias", (style_dim,))}
    params[f"styles_{j}"] = block
    n_convs.append(len(block) - 1)
  # Coarse styles read c3 (16 px for a 256 px input), middle p2 (x2), fine p1 (x4).
  c3_log = n_convs[0]
  for j, n in enumerate(n_convs):
    want = c3_log + (0 if j < _COARSE_IND else 1 if j < _MIDDLE_IND else 2)
    if n != want:
      raise ConversionError(f"{sd.source}: styles.{j} has {n} convs, expected {want} for pSp's "
                            "coarse (0-2) / middle (3-6) / fine (7+) layout")
  c1_w, c2_w = config["widths"][1], config["widths"][2]
  params["latlayer1"] = _conv(sd, f"{prefix}latlayer1", (width, c2_w, 1, 1), bias=True)
  params["latlayer2"] = _conv(sd, f"{prefix}latlayer2", (width, c1_w, 1, 1), bias=True)
  config.update({"n_styles": len(styles), "style_dim": style_dim,
                 "coarse_ind": _COARSE_IND, "middle_ind": _MIDDLE_IND})
  # Every stage halves the resolution; the input layer keeps it.
  input_size = 2 ** c3_log * 2 ** len(config["widths"])
  return config, {"params": params, "batch_stats": {"backbone": backbone_s}}, {
      "input_size": input_size, "input_nc": input_nc}


def _latent_avg(value, n_styles: int, style_dim: int, source: str) -> np.ndarray:
  value = np.asarray(value, np.float32)
  if value.shape in ((style_dim,), (1, style_dim)):
    value = np.broadcast_to(value.reshape(1, style_dim), (n_styles, style_dim))
  if value.shape != (n_styles, style_dim):
    raise ConversionError(f"{source}: latent_avg has shape {value.shape}, expected "
                          f"({n_styles}, {style_dim}) or ({style_dim},)")
  return np.ascontiguousarray(value)


def _opts_dict(opts) -> dict:
  if opts is None:
    return {}
  if isinstance(opts, Mapping):
    return dict(opts)
  return dict(vars(opts))


def convert_psp(checkpoint: Mapping, source: str = "pSp checkpoint",
                check: bool = True) -> tuple[dict, dict]:
  """Converts a pSp checkpoint (numpy arrays, as ``torch_io.load_checkpoint`` returns it).

  Returns ``(config, variables)`` for ``difai_jax.models.psp.from_config`` (config without
  ``kind``). With ``check`` the variables are compared with ``jax.eval_shape`` of the module.
  """
  if "state_dict" not in checkpoint:
    raise ConversionError(f"{source}: no 'state_dict' entry (top-level keys: "
                          f"{sorted(checkpoint)}); not a pSp checkpoint")
  tensors = checkpoint["state_dict"]
  opts = _opts_dict(checkpoint.get("opts"))
  for key, want in (("encoder_type", "GradualStyleEncoder"), ("learn_in_w", False)):
    if key in opts and opts[key] != want:
      raise ConversionError(f"{source}: opts.{key} is {opts[key]!r}; only {want!r} is supported")

  enc_sd = StateDict(tensors, source=f"{source}[state_dict]", ignore=("decoder.*",
                                                                      "*.num_batches_tracked"))
  enc_config, enc_vars, extra = convert_encoder(enc_sd, "encoder.")
  enc_sd.check_all_used()

  dec_sd = StateDict(torch_io.sub_state_dict(tensors, "decoder."),
                     source=f"{source}[state_dict][decoder.*]")
  dec_config, dec_vars = stylegan2_conversion.convert_generator(dec_sd, check=False)
  dec_sd.check_all_used()

  n_styles, style_dim = enc_config["n_styles"], enc_config["style_dim"]
  size = dec_config["size"]
  if n_styles != 2 * int(np.log2(size)) - 2:
    raise ConversionError(f"{source}: the encoder has {n_styles} styles but the {size} px "
                          f"decoder takes {2 * int(np.log2(size)) - 2}")
  for key, got in (("n_styles", n_styles), ("output_size", size), ("input_nc", extra["input_nc"])):
    if key in opts and int(opts[key]) != got:
      raise ConversionError(f"{source}: opts.{key} = {opts[key]} but the tensors give {got}")

  if checkpoint.get("latent_avg") is not None:
    latent_avg = _latent_avg(checkpoint["latent_avg"], n_styles, style_dim, source)
    has_avg = True
  else:
    latent_avg, has_avg = np.zeros((n_styles, style_dim), np.float32), False
  start = bool(opts.get("start_from_latent_avg", True)) and has_avg

  variables = {
      "params": {"encoder": enc_vars["params"], "decoder": dec_vars["params"]},
      "batch_stats": {"encoder": enc_vars["batch_stats"]},
      "constants": {"latent_avg": latent_avg},
  }
  if "noises" in dec_vars:
    variables["noises"] = {"decoder": dec_vars["noises"]}
  config = {"encoder": enc_config, "decoder": dec_config, "start_from_latent_avg": start,
            "input_size": extra["input_size"], "pool_size": 256}
  variables = _as_float32(variables)
  if check:
    check_against_module(config, variables)
  return config, variables


def convert_backbone(tensors: Mapping, source: str = "IR-SE backbone") -> tuple[dict, dict]:
  """Converts a bare ``model_ir_se50.pth``-layout state dict; returns (config, variables)."""
  sd = StateDict(tensors, source=source, ignore=_BACKBONE_IGNORED)
  config = infer_backbone_config(sd)
  input_nc = sd.shape("input_layer.0.weight")[1]
  params, stats = convert_backbone_tensors(sd, config, "", input_nc)
  sd.check_all_used()
  variables = _as_float32({"params": params, "batch_stats": stats})
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from difai_jax.models import psp  # pylint: disable=import-outside-toplevel
  module = psp.backbone_from_config(config)
  x = jax.ShapeDtypeStruct((1, 32, 32, input_nc), jnp.float32)
  expected = jax.eval_shape(lambda x: module.init(jax.random.key(0), x), x)
  torch_io.check_shapes(variables, expected)
  return config, variables


def _as_float32(tree):
  if isinstance(tree, Mapping):
    return {k: _as_float32(v) for k, v in tree.items()}
  return np.asarray(tree, np.float32)


def check_against_module(config: dict, variables: dict) -> None:
  """Raises ConversionError if ``variables`` do not fit the Flax PSP built from ``config``."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from difai_jax.models import psp  # pylint: disable=import-outside-toplevel
  module = psp.from_config(config)
  nc = variables["params"]["encoder"]["backbone"]["input_conv"]["kernel"].shape[2]
  s = config["input_size"]
  x = jax.ShapeDtypeStruct((1, s, s, nc), jnp.float32)
  expected = jax.eval_shape(lambda x: module.init(jax.random.key(0), x), x)
  expected = dict(expected)
  if "noises" not in variables:
    expected.pop("noises", None)
  torch_io.check_shapes(variables, expected)


def is_backbone(tensors: Mapping) -> bool:
  return "input_layer.0.weight" in tensors and "body.0.res_layer.1.weight" in tensors


def convert_file(src: str, dst: str) -> tuple[str, dict]:
  """Converts ``src`` and writes ``dst``; returns (kind, config)."""
  from difai_jax import pretrained  # pylint: disable=import-outside-toplevel
  checkpoint = torch_io.load_checkpoint(src)
  if is_backbone(checkpoint):
    kind = "ir_se_backbone"
    config, variables = convert_backbone(checkpoint, source=src)
  elif is_backbone(checkpoint.get("state_dict", {})):
    kind = "ir_se_backbone"
    config, variables = convert_backbone(checkpoint["state_dict"], source=f"{src}[state_dict]")
  else:
    kind = "psp"
    if "state_dict" not in checkpoint and any(k.startswith("encoder.") for k in checkpoint):
      checkpoint = {"state_dict": checkpoint}  # a bare pSp state dict (no latent_avg / opts)
    config, variables = convert_psp(checkpoint, source=src)
  pretrained.save(dst, kind, config, variables)
  return kind, config


def main(argv=None) -> int:
  parser = torch_io.converter_parser(
      "psp", "Convert a pixel2style2pixel checkpoint (or the bare IR-SE50 backbone "
      "model_ir_se50.pth) to a difai_jax model directory.",
      "pSp .pt checkpoint, or model_ir_se50.pth")
  args = parser.parse_args(argv)
  try:
    kind, config = convert_file(args.src, args.dst)
  except (ConversionError, FileNotFoundError, FileExistsError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  if kind == "psp":
    enc = config["encoder"]
    print(f"converted {args.src} -> {args.dst}: pSp GradualStyleEncoder ({enc['mode']}, units "
          f"{enc['unit_counts']}, widths {enc['widths']}, {enc['n_styles']} styles of "
          f"{enc['style_dim']}), input {config['input_size']} px, decoder "
          f"{config['decoder']['size']} px, start_from_latent_avg "
          f"{config['start_from_latent_avg']}")
  else:
    print(f"converted {args.src} -> {args.dst}: IR backbone ({config['mode']}, units "
          f"{config['unit_counts']}, widths {config['widths']}); output_layer.* ignored")
  return 0


if __name__ == "__main__":
  sys.exit(main())
