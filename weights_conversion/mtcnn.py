"""Converts facenet-pytorch's MTCNN weights into a ``difai_jax.pretrained`` directory.

Usage::

    pip download --no-deps facenet-pytorch -d .        # a wheel; nothing needs installing
    python -m weights_conversion.mtcnn facenet_pytorch-2.6.0-py3-none-any.whl DST_DIR

``SRC`` is the facenet-pytorch wheel (the three state dicts ``facenet_pytorch/data/{pnet,rnet,
onet}.pt`` are read straight out of it) or a folder holding ``pnet.pt``, ``rnet.pt`` and
``onet.pt``. Each is read safely (``torch.load(weights_only=True)``, see ``torch_io``).
``DST_DIR`` receives ``config.json`` (kind ``mtcnn``) and the Flax variables of
:class:`difai_jax.inference.face.mtcnn.MTCNNNets`; the package ships the result as
``difai_jax/assets/mtcnn`` (short name ``mtcnn``), facenet-pytorch being MIT-licensed.

Key map (facenet-pytorch -> Flax, per net ``pnet`` / ``rnet`` / ``onet``)::

    convK.weight   (O, I, kh, kw)  ->  params/<net>/convK/kernel   (kh, kw, I, O)
    convK.bias     (O,)            ->  params/<net>/convK/bias
    preluK.weight  (C,)            ->  params/<net>/preluK/alpha
    denseK.weight  (out, in)       ->  params/<net>/denseK/kernel  (in, out)
    denseK.bias    (out,)          ->  params/<net>/denseK/bias

The dense layers after the convs read the maps flattened in facenet-pytorch's (W, H, C) order,
which the Flax modules reproduce, so no kernel is permuted.
"""

from __future__ import annotations

import os
import sys
import tempfile
import zipfile
from typing import Mapping, Sequence

import jax
import numpy as np

from difai_jax import pretrained
from difai_jax.inference.face import mtcnn
from difai_jax.nn import parameter_count
from weights_conversion import torch_io

NETS = ("pnet", "rnet", "onet")
WHEEL_DIR = "facenet_pytorch/data"

# Per net: (PyTorch layer, kind) in forward order; kinds: conv, prelu, dense.
LAYERS = {
    "pnet": (("conv1", "conv"), ("prelu1", "prelu"), ("conv2", "conv"), ("prelu2", "prelu"),
             ("conv3", "conv"), ("prelu3", "prelu"), ("conv4_1", "conv"), ("conv4_2", "conv")),
    "rnet": (("conv1", "conv"), ("prelu1", "prelu"), ("conv2", "conv"), ("prelu2", "prelu"),
             ("conv3", "conv"), ("prelu3", "prelu"), ("dense4", "dense"), ("prelu4", "prelu"),
             ("dense5_1", "dense"), ("dense5_2", "dense")),
    "onet": (("conv1", "conv"), ("prelu1", "prelu"), ("conv2", "conv"), ("prelu2", "prelu"),
             ("conv3", "conv"), ("prelu3", "prelu"), ("conv4", "conv"), ("prelu4", "prelu"),
             ("dense5", "dense"), ("prelu5", "prelu"), ("dense6_1", "dense"),
             ("dense6_2", "dense"), ("dense6_3", "dense")),
}


def convert_net(sd: torch_io.StateDict, net: str) -> dict:
  """One net's state dict -> its Flax params (``{layer: {kernel, bias} | {alpha}}``)."""
  params = {}
  for layer, kind in LAYERS[net]:
    if kind == "prelu":
      params[layer] = {"alpha": sd.take(f"{layer}.weight").astype(np.float32)}
      continue
    weight = sd.take(f"{layer}.weight")
    to_flax = torch_io.conv_kernel if kind == "conv" else torch_io.dense_kernel
    params[layer] = {"kernel": to_flax(weight).astype(np.float32),
                     "bias": sd.take(f"{layer}.bias", (weight.shape[0],)).astype(np.float32)}
  sd.check_all_used()
  return params


def convert(state_dicts: Mapping[str, Mapping[str, np.ndarray]],
            source: str = "facenet-pytorch") -> tuple[dict, dict]:
  """``{"pnet": sd, "rnet": sd, "onet": sd}`` (numpy arrays) -> ``(config, variables)``.

  Raises:
    torch_io.ConversionError naming the net, key and shapes that do not fit.
  """
  missing = [n for n in NETS if n not in state_dicts]
  if missing:
    raise torch_io.ConversionError(f"{source}: no state dict for {missing}")
  params = {net: convert_net(torch_io.StateDict(state_dicts[net], source=f"{source}[{net}]"),
                             net) for net in NETS}
  variables = {"params": params}
  expected = jax.eval_shape(mtcnn.MTCNNNets().init, jax.random.key(0), *mtcnn.init_shapes())
  torch_io.check_shapes(variables, expected)
  return {}, variables


def read_state_dicts(src: str) -> dict[str, dict]:
  """The three state dicts of a facenet-pytorch wheel (or of a folder of ``<net>.pt`` files)."""
  if os.path.isdir(src):
    paths = {net: os.path.join(src, f"{net}.pt") for net in NETS}
    return {net: torch_io.load_checkpoint(path) for net, path in paths.items()}
  if not os.path.isfile(src):
    raise FileNotFoundError(f"{src} does not exist (a facenet-pytorch wheel or a folder of "
                            "pnet.pt, rnet.pt, onet.pt)")
  if not zipfile.is_zipfile(src):
    raise torch_io.ConversionError(f"{src} is not a wheel (zip) file; pass the facenet-pytorch "
                                   ".whl or a folder holding pnet.pt, rnet.pt and onet.pt")
  out = {}
  with zipfile.ZipFile(src) as wheel, tempfile.TemporaryDirectory() as tmp:
    names = set(wheel.namelist())
    for net in NETS:
      member = f"{WHEEL_DIR}/{net}.pt"
      if member not in names:
        raise torch_io.ConversionError(f"{src} has no {member}; is it a facenet-pytorch wheel?")
      path = os.path.join(tmp, f"{net}.pt")
      with wheel.open(member) as f_in, open(path, "wb") as f_out:
        f_out.write(f_in.read())
      out[net] = torch_io.load_checkpoint(path)
  return out


def main(argv: Sequence[str] | None = None) -> int:
  parser = torch_io.converter_parser(
      "mtcnn", "Convert facenet-pytorch's MTCNN (PNet, RNet, ONet) to a difai-jax model "
                  "directory.",
      "facenet_pytorch-*.whl, or a folder of pnet.pt, rnet.pt, "
                      "onet.pt")
  args = parser.parse_args(argv)
  try:
    config, variables = convert(read_state_dicts(args.src), source=args.src)
    pretrained.save(args.dst, "mtcnn", config, variables)
  except (torch_io.ConversionError, FileNotFoundError, FileExistsError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  n = parameter_count(variables)
  print(f"wrote {args.dst}: MTCNN (PNet, RNet, ONet), {n} parameters")
  return 0


if __name__ == "__main__":
  sys.exit(main())
