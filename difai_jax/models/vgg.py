"""VGG-19 feature taps for the perceptual and style losses (DiFAI eq. 6-7).

Re-expresses the convolutional part of torchvision's ``vgg19`` (configuration "E" of Simonyan &
Zisserman 2015: 16 3x3 convs with padding 1, ReLU, 2x2 max pools) in Flax, NHWC. The classifier
is not part of this module; the losses only read intermediate activations.

Layer names follow the usual "block_index" reading of VGG (``conv3_2`` is the 2nd conv of block
3, ``relu3_2`` the ReLU after it, ``pool3`` the max pool closing block 3). Parameters are named
``conv1_1`` ... ``conv5_4``; :data:`TORCHVISION_INDEX` gives the ``features.<i>`` index of each
layer in torchvision's ``nn.Sequential`` (``conv1_1`` = ``features.0``, ``relu5_1`` =
``features.29``, ...), which is what ``weights_conversion.vgg19`` reads.

Inputs are images in [-1, 1] (the project convention); they are mapped to [0, 1] and normalised
with the ImageNet mean and std inside the module, as torchvision's weights expect. Only the layers
up to the deepest requested tap are built, so a module tapping ``relu5_1`` has 13 of the 16
convolutions; extra parameters in a converted checkpoint (``conv5_2`` ... ``conv5_4``) are simply
not read.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

# torchvision's normalisation of [0, 1] RGB inputs.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The taps of the perceptual / style losses (DiFAI eq. 6-7).
DEFAULT_TAPS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

# Conv widths of the five blocks of VGG-19 (configuration "E"): 2, 2, 4, 4, 4 convs.
_BLOCKS = ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4))


def _layer_table() -> list[tuple[str, int, int | None]]:
  """Returns ``[(name, torchvision features index, conv width or None)]`` in forward order."""
  table = []
  index = 0
  for b, (width, n_convs) in enumerate(_BLOCKS, start=1):
    for i in range(1, n_convs + 1):
      table.append((f"conv{b}_{i}", index, width))
      table.append((f"relu{b}_{i}", index + 1, None))
      index += 2
    table.append((f"pool{b}", index, None))
    index += 1
  return table


LAYERS = _layer_table()
LAYER_NAMES = tuple(name for name, _, _ in LAYERS)
TORCHVISION_INDEX = {name: index for name, index, _ in LAYERS}
CONV_WIDTHS = {name: width for name, _, width in LAYERS if width is not None}


def check_taps(taps: Any) -> tuple[str, ...]:
  """Validates tap names and returns them as a tuple (raises ValueError naming the bad one)."""
  if isinstance(taps, str):
    raise ValueError(f"taps must be a sequence of layer names, got the string {taps!r}")
  taps = tuple(taps)
  if not taps:
    raise ValueError("taps is empty: name at least one VGG-19 layer, e.g. 'relu1_1'")
  for tap in taps:
    if tap not in TORCHVISION_INDEX:
      raise ValueError(f"unknown VGG-19 tap {tap!r}; known layers: {', '.join(LAYER_NAMES)}")
  if len(set(taps)) != len(taps):
    raise ValueError(f"taps {taps} name a layer twice")
  return taps


class VGG19Features(nn.Module):
  """Activations of VGG-19 at the requested layers.

  Attributes:
    taps: layer names to return (see :data:`LAYER_NAMES`): ``convB_I`` (before the ReLU),
      ``reluB_I`` or ``poolB``.
    dtype: compute dtype (parameters stay float32).
    width_divisor: divides every conv width (1 = VGG-19; larger only for randomly initialised
      stand-ins in demos and tests, which converted weights never fit).
  """
  taps: tuple[str, ...] = DEFAULT_TAPS
  dtype: Any = jnp.float32
  width_divisor: int = 1

  @nn.compact
  def __call__(self, images: jnp.ndarray) -> dict[str, jnp.ndarray]:
    """Maps images to features.

    Args:
      images: (N, H, W, 3) float RGB in [-1, 1].

    Returns:
      dict ``tap -> (N, h, w, C)`` in ``self.dtype`` (JAX pytrees sort dict keys); a tap after
      ``k`` pools has ``h = H // 2**k`` (floor, as torch's MaxPool2d).
    """
    taps = check_taps(self.taps)
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"VGG19Features expects (N, H, W, 3) RGB images, got shape {images.shape}")
    mean = jnp.asarray(IMAGENET_MEAN, jnp.float32)
    std = jnp.asarray(IMAGENET_STD, jnp.float32)
    x = ((images.astype(jnp.float32) + 1.0) * 0.5 - mean) / std  # [-1, 1] -> ImageNet-normalised
    x = x.astype(self.dtype)

    last = max(LAYER_NAMES.index(t) for t in taps)
    features = {}
    for name, _, width in LAYERS[:last + 1]:
      if name.startswith("conv"):
        x = nn.Conv(max(1, width // self.width_divisor), (3, 3), padding=((1, 1), (1, 1)),
                    dtype=self.dtype, param_dtype=jnp.float32, name=name)(x)
      elif name.startswith("relu"):
        x = nn.relu(x)
      else:  # (N, H, W, C) -> (N, H // 2, W // 2, C)
        x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")
      if name in taps:
        features[name] = x
    return {t: features[t] for t in taps}


def from_config(config: dict) -> VGG19Features:
  """Builds the module from a ``config.json`` dict (``difai_jax.pretrained`` kind ``vgg19``).

  Fields: ``taps`` (list of layer names, default :data:`DEFAULT_TAPS`), ``dtype`` (compute dtype
  name, default ``"float32"``). Other fields are an error.
  """
  config = dict(config)
  config.pop("kind", None)
  taps = check_taps(config.pop("taps", DEFAULT_TAPS))
  dtype = jnp.dtype(config.pop("dtype", "float32"))
  if config:
    raise ValueError(f"unknown vgg19 config fields: {sorted(config)}; known: taps, dtype")
  return VGG19Features(taps=taps, dtype=dtype)
