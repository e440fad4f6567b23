"""LPIPS, the learned perceptual image patch similarity (Zhang et al., CVPR 2018).

Re-expresses the distance of the ``lpips`` package, version 0.1 with ``spatial=False``, which the
DiFAI paper reports (Table 1, LPIPS; and the diversity score of PIC, see ``diversity.py``):

1. both images, in [-1, 1], go through the package's fixed *scaling layer*
   ``(x - shift) / scale`` with ``shift = (-0.030, -0.088, -0.188)`` and
   ``scale = (0.458, 0.448, 0.450)`` (ImageNet statistics expressed in [-1, 1]);
2. a frozen ImageNet backbone (torchvision's AlexNet ``features`` -- the default -- or VGG-16
   ``features``) gives five ReLU feature maps;
3. each map is unit-normalised along channels, ``f / (||f||_2 + 1e-10)``;
4. the squared difference of the normalised maps is weighted per channel by the learned
   non-negative 1x1 linear layer ``lin_l`` (no bias), averaged over space, and
5. summed over the five layers.

The result is one distance per image pair, shape ``(N,)``. With a ``region`` (N, H, W, 1) weight
(e.g. the hole, ``1 - mask``), step 4's spatial mean becomes a mean over that region: each layer's
per-pixel map is upsampled to the input size bilinearly (``align_corners=False``) as the package's
``spatial=True`` does, and averaged with the region's weights; so the distance restricted to the
hole equals the package's spatial map averaged over the hole pixels. Weights come from
``python -m weights_conversion.lpips`` (torchvision backbone + the package's linear layers) and are
loaded with ``difai_jax.pretrained.load(DIR)`` (kind ``"lpips"``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from difai_jax.evaluation.metrics import fid as fid_lib

# The lpips package's ScalingLayer constants (fixed buffers, not learned).
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
# lpips.normalize_tensor's epsilon.
NORM_EPS = 1e-10


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
  """A torchvision ``features`` stack as a table.

  Attributes:
    layers: one entry per index of the torchvision ``nn.Sequential``: ``("conv", out_channels,
      kernel, stride, padding)``, ``("relu",)`` or ``("maxpool",)`` (3x3 stride 2 for AlexNet,
      2x2 stride 2 for VGG; see ``pool``).
    taps: indices (into ``layers``) after which a feature map is taken.
    channels: channel count of each tap (the input width of ``lin_l``).
    pool: (window, stride) of the max-pools.
  """
  layers: tuple[tuple[Any, ...], ...]
  taps: tuple[int, ...]
  channels: tuple[int, ...]
  pool: tuple[int, int]

  def conv_indices(self) -> list[int]:
    """Indices of the conv layers, i.e. torchvision's ``features.{i}.weight`` keys."""
    return [i for i, layer in enumerate(self.layers) if layer[0] == "conv"]

  def conv_shapes(self) -> dict[int, tuple[int, int, int]]:
    """``{index: (in_channels, out_channels, kernel)}`` of every conv layer."""
    shapes, width = {}, 3
    for i, layer in enumerate(self.layers):
      if layer[0] == "conv":
        shapes[i] = (width, layer[1], layer[2])
        width = layer[1]
    return shapes


def _vgg16_layers() -> tuple[tuple[Any, ...], ...]:
  layers = []
  for widths in ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)):
    for w in widths:
      layers += [("conv", w, 3, 1, 1), ("relu",)]
    layers.append(("maxpool",))
  return tuple(layers)


BACKBONES: dict[str, BackboneSpec] = {
    # torchvision alexnet().features; taps relu1..relu5 as lpips.pretrained_networks.alexnet.
    "alex": BackboneSpec(
        layers=(("conv", 64, 11, 4, 2), ("relu",), ("maxpool",),
                ("conv", 192, 5, 1, 2), ("relu",), ("maxpool",),
                ("conv", 384, 3, 1, 1), ("relu",),
                ("conv", 256, 3, 1, 1), ("relu",),
                ("conv", 256, 3, 1, 1), ("relu",), ("maxpool",)),
        taps=(1, 4, 7, 9, 11),
        channels=(64, 192, 384, 256, 256),
        pool=(3, 2)),
    # torchvision vgg16().features; taps relu1_2, relu2_2, relu3_3, relu4_3, relu5_3.
    "vgg": BackboneSpec(
        layers=_vgg16_layers(),
        taps=(3, 8, 15, 22, 29),
        channels=(64, 128, 256, 512, 512),
        pool=(2, 2)),
}


def backbone_spec(net: str) -> BackboneSpec:
  if net not in BACKBONES:
    raise ValueError(f"unknown LPIPS backbone {net!r}; choose one of {sorted(BACKBONES)}")
  return BACKBONES[net]


class LPIPSBackbone(nn.Module):
  """The frozen classification trunk; returns the five tapped ReLU maps (NHWC).

  Conv layers are named ``features_{i}`` after their torchvision index ``i``.
  """
  net: str = "alex"
  dtype: Any = jnp.float32
  precision: Any = None   # None: the run's precision policy (difai_jax.nn.precision)

  @nn.compact
  def __call__(self, x: jax.Array) -> list[jax.Array]:
    spec = backbone_spec(self.net)
    taps = []
    for i, layer in enumerate(spec.layers[:spec.taps[-1] + 1]):
      if layer[0] == "conv":
        _, width, k, stride, pad = layer
        x = nn.Conv(width, (k, k), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                    dtype=self.dtype, precision=self.precision, name=f"features_{i}")(x)
      elif layer[0] == "relu":
        x = nn.relu(x)
      else:  # torch MaxPool2d without padding, floor mode == VALID
        window, stride = spec.pool
        x = nn.max_pool(x, (window, window), strides=(stride, stride), padding="VALID")
      if i in spec.taps:
        taps.append(x)
    return taps


def _unit_normalize(f: jax.Array) -> jax.Array:
  """``f / (||f||_2 + eps)`` along channels (lpips.normalize_tensor)."""
  norm = jnp.sqrt(jnp.sum(jnp.square(f), axis=-1, keepdims=True))
  return f / (norm + NORM_EPS)


class LPIPS(nn.Module):
  """LPIPS v0.1 distance between two image batches.

  Attributes:
    net: backbone, ``"alex"`` (the lpips package's default) or ``"vgg"`` (VGG-16).
    dtype: compute dtype (params stay float32).
    precision: conv precision; None follows the precision policy (``difai_jax.nn.precision``;
      evaluate defaults to ``highest``, full float32) so that numbers
      match the PyTorch package on every accelerator.
  """
  net: str = "alex"
  dtype: Any = jnp.float32
  precision: Any = None   # None: the run's precision policy (difai_jax.nn.precision)

  @nn.compact
  def __call__(self, x: jax.Array, y: jax.Array, region: jax.Array | None = None) -> jax.Array:
    """Distance per image.

    Args:
      x, y: (N, H, W, 3) images in [-1, 1] (the ``lpips`` package's default input range). H and W
        must be large enough for the backbone (AlexNet: >= 32 px; VGG-16: >= 16 px).
      region: optional (N, H, W, 1) non-negative weights (e.g. the hole, 1 - mask): the distance
        restricted to it (the package's ``spatial=True`` map averaged over the region).

    Returns:
      (N,) float32 LPIPS distances. Identical images give 0 up to float rounding (XLA may round
      the two halves of the batch differently: ~1e-15, against ~0.1 for visibly different
      images).
    """
    if x.shape != y.shape:
      raise ValueError(f"LPIPS compares images of equal shape, got {x.shape} and {y.shape}")
    if x.ndim != 4 or x.shape[-1] != 3:
      raise ValueError(f"LPIPS expects (N, H, W, 3) RGB images, got shape {x.shape}")
    spec = backbone_spec(self.net)
    shift = jnp.asarray(SHIFT, jnp.float32)
    scale = jnp.asarray(SCALE, jnp.float32)
    n = x.shape[0]
    # One pass of the trunk over both batches: (2N, H, W, 3) -> five (2N, h, w, C) maps.
    both = (jnp.concatenate([x, y], axis=0).astype(jnp.float32) - shift) / scale
    feats = LPIPSBackbone(self.net, self.dtype, self.precision, name="backbone")(
        both.astype(self.dtype))
    distance = jnp.zeros((n,), jnp.float32)
    for l, (f, width) in enumerate(zip(feats, spec.channels)):
      f = _unit_normalize(f.astype(jnp.float32))
      diff = jnp.square(f[:n] - f[n:])  # (N, h, w, C)
      # lin_l: 1x1 conv C -> 1 without bias, then the spatial mean.
      w = self.param(f"lin{l}", nn.initializers.ones, (width,), jnp.float32)
      per_pixel = jnp.einsum("nhwc,c->nhw", diff, w, precision=self.precision)
      distance = distance + (jnp.mean(per_pixel, axis=(1, 2)) if region is None else
                             _region_mean(per_pixel, region, self.precision))
    return distance


def _region_mean(per_pixel: jax.Array, region: jax.Array, precision) -> jax.Array:
  """(N, h, w) map upsampled to the region's (N, H, W, 1) size, averaged with its weights."""
  size = region.shape[1:3]
  up = fid_lib.resize_bilinear(per_pixel[..., None], size, precision=precision)[..., 0]
  weights = region[..., 0].astype(jnp.float32)
  return jnp.sum(up * weights, axis=(1, 2)) / jnp.maximum(jnp.sum(weights, axis=(1, 2)), 1e-12)


def from_config(config: dict) -> LPIPS:
  """Builds the module of a converted ``kind == "lpips"`` directory (fields: ``net``)."""
  config = dict(config)
  net = config.pop("net", "alex")
  config.pop("version", None)
  if config:
    raise ValueError(f"unknown LPIPS config fields {sorted(config)}; expected 'net'")
  backbone_spec(net)
  return LPIPS(net=net)


def lpips_distance_fn(module: LPIPS, variables: Any):
  """A jitted ``(x, y) -> (N,)`` closure over converted variables (for metrics loops)."""
  apply = jax.jit(module.apply)  # variables stay an argument, not baked-in constants
  return lambda x, y: apply(variables, x, y)


__all__ = ("LPIPS", "LPIPSBackbone", "BACKBONES", "backbone_spec", "from_config",
           "lpips_distance_fn")
