"""Converts a torchvision ``vgg19`` state dict into a ``difai_jax.pretrained`` directory.

Usage::

    python -m weights_conversion.vgg19 SRC.pth DST_DIR

``SRC.pth`` is the state dict of ``torchvision.models.vgg19`` (e.g. the ImageNet file
``vgg19-dcbb9e9d.pth`` that torchvision caches); ``DST_DIR`` receives ``config.json``
(kind ``vgg19``) and the Flax variables, loadable with ``difai_jax.pretrained.load``.

Key map (torchvision -> Flax, see ``difai_jax.models.vgg``)::

    features.<i>.weight (O, I, 3, 3)  ->  params/<convB_I>/kernel (3, 3, I, O)
    features.<i>.bias   (O,)          ->  params/<convB_I>/bias   (O,)

with ``i`` = ``TORCHVISION_INDEX[convB_I]`` (0, 2, 5, 7, 10, ..., 34). All 16 convolutions are
converted, so the directory serves any tap up to ``pool5``. The ``classifier.*`` tensors (the
three fully connected layers) are deliberately ignored: the losses never use the classifier.
Any other key (e.g. the BatchNorm buffers of ``vgg19_bn``) stops the conversion with its name.
"""

from __future__ import annotations

import sys
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from difai_jax.models import vgg
from weights_conversion import torch_io

# Tensors of the state dict that the converter reads on purpose never (the classifier head).
IGNORED = ("classifier.*",)


@torch_io.converter_command(kind="vgg19",
                             src_help="torchvision vgg19 state dict, e.g. vgg19-dcbb9e9d.pth")
def convert(state_dict: Mapping[str, np.ndarray],
            source: str = "vgg19 state dict") -> tuple[dict, dict]:
  """Maps a torchvision ``vgg19`` state dict (numpy arrays) to ``(config, variables)``.

  Args:
    state_dict: flat ``name -> array`` mapping as ``torch_io.load_checkpoint`` returns it.
    source: label used in error messages.

  Returns:
    ``config`` (``{"taps": [...], "dtype": "float32"}``, without ``kind``) and
    ``variables = {"params": {"conv1_1": {"kernel", "bias"}, ..., "conv5_4": {...}}}``.

  Raises:
    torch_io.ConversionError naming the key (and shapes) that is missing, mis-shaped or unknown.
  """
  if "state_dict" in state_dict and isinstance(state_dict["state_dict"], Mapping):
    state_dict = state_dict["state_dict"]     # a training checkpoint around the weights
  if any("running_mean" in k for k in state_dict):
    raise torch_io.ConversionError(
        f"{source} has BatchNorm buffers (e.g. "
        f"{next(k for k in state_dict if 'running_mean' in k)!r}): it looks like vgg19_bn, "
        "which is not supported; pass a plain torchvision vgg19 state dict")
  sd = torch_io.StateDict(state_dict, source=source, ignore=IGNORED)
  params = {}
  in_channels = 3
  for name, index, width in vgg.LAYERS:
    if width is None:
      continue
    weight = sd.take(f"features.{index}.weight", (width, in_channels, 3, 3))
    bias = sd.take(f"features.{index}.bias", (width,))
    params[name] = {"kernel": torch_io.conv_kernel(weight).astype(np.float32),
                    "bias": np.asarray(bias, np.float32)}
    in_channels = width
  sd.check_all_used()
  variables = {"params": params}

  # Every conv of the network, checked against the module that builds all of them.
  full = vgg.VGG19Features(taps=("pool5",))
  expected = jax.eval_shape(full.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  torch_io.check_shapes(variables, expected)
  config = {"taps": list(vgg.DEFAULT_TAPS), "dtype": "float32"}
  return config, variables


main = convert.main

if __name__ == "__main__":
  sys.exit(main())
