"""Toy-face recognizer: a small CNN that names the attributes of a procedural toy face.

Not a paper component. DiFAI (Yoon et al.) is judged with FID (Inception features) and by eye;
on the toy-face domain (``difai_jax/data/toy_faces.py``) neither ImageNet weights nor people are
at hand, but every face's attributes are known (``toy_faces.ATTRIBUTES``: hair style and colour,
skin tone, beard, moustache, glasses, mouth, lipstick, earrings). This network, trained on them
(stage ``recognizer``), gives the toy domain its measures (``difai_jax.evaluation.metrics.toy``): a
Frechet
distance in its feature space and the attributes of each completion.

Architecture: 3x3 convs with GroupNorm (per sample: a face's outputs never depend on its
batch-mates) and SiLU, halving the resolution four times (64 -> 4 px; ~220k parameters, fast on
a CPU), a 1x1 conv to a few channels, flattened (position matters: glasses sit at the eyes,
beards at the chin) into a linear ``feature_dim`` embedding (the "toy FID" features), then one
softmax head per attribute on ``relu(embedding)``. Inputs of another size are resized to
``input_size`` first (bilinear, antialiased). Images NHWC in [-1, 1].
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class Recognizer(nn.Module):
  """images (N, H, W, 3) in [-1, 1] -> {"embedding": (N, D), "logits": {name: (N, C)}}.

  Methods: ``embed`` gives the (N, D) embedding alone (the toy-FID features); ``features`` gives
  the feature maps of every level and the embedding, a list of taps for a perceptual distance
  (as VGG's taps are used by LPIPS; the pSp stage's ``toy_recognizer`` term uses them).

  Attributes:
    attributes: ``(name, number of classes)`` per softmax head, in label order.
    widths: conv widths, one level each: a stride-2 conv then a stride-1 conv.
    feature_dim: size D of the embedding.
    bottleneck: channels of the 1x1 conv before flattening.
    input_size: side the network runs at; other sizes are resized to it.
    groups: GroupNorm groups (must divide every width).
  """
  attributes: Sequence[tuple[str, int]]
  widths: Sequence[int] = (16, 32, 64, 64)
  feature_dim: int = 128
  bottleneck: int = 32
  input_size: int = 64
  groups: int = 8

  @nn.compact
  def __call__(self, images: jax.Array, return_taps: bool = False) -> dict[str, Any]:
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"the recognizer takes (N, H, W, 3) RGB images, got {images.shape}")
    x = images.astype(jnp.float32)
    n, h, w, _ = x.shape
    if (h, w) != (self.input_size, self.input_size):
      x = jax.image.resize(x, (n, self.input_size, self.input_size, 3), "linear", antialias=True)

    def conv_block(x, width, stride, name):
      x = nn.Conv(width, (3, 3), strides=(stride, stride), padding=((1, 1), (1, 1)),
                  name=f"{name}_conv")(x)
      return nn.silu(nn.GroupNorm(num_groups=self.groups, name=f"{name}_norm")(x))

    taps = []
    for i, width in enumerate(self.widths):
      x = conv_block(x, width, 2, f"down{i}")                        # (N, H/2, W/2, width)
      x = conv_block(x, width, 1, f"block{i}")
      taps.append(x)
    # (N, 64, 64, 3) -> (N, 4, 4, widths[-1]) with the default four widths.
    x = nn.silu(nn.Conv(self.bottleneck, (1, 1), name="bottleneck")(x))   # (N, 4, 4, b)
    embedding = nn.Dense(self.feature_dim, name="embedding")(x.reshape(n, -1))  # (N, D)
    hidden = nn.relu(embedding)
    logits = {name: nn.Dense(classes, name=f"head_{name}")(hidden)
              for name, classes in self.attributes}
    out = {"embedding": embedding, "logits": logits}
    if return_taps:
      out["taps"] = taps + [embedding]
    return out

  def embed(self, images: jax.Array) -> jax.Array:
    """(N, D) embedding of images (N, H, W, 3) in [-1, 1]: the toy-FID feature space."""
    return self(images)["embedding"]

  def features(self, images: jax.Array) -> list[jax.Array]:
    """Taps for a perceptual distance: each level's (N, h, w, C) map, then the (N, D) embedding."""
    return self(images, return_taps=True)["taps"]


class Ensemble(nn.Module):
  """Several recognizers of the same attributes read as one (e.g. the same recipe from several
  seeds): each head's probabilities are the members' mean (returned as their log, so that a
  softmax of the logits gives the mean back), the embedding the members' concatenated.
  Variables: ``{"params": {"members_0": ..., "members_1": ...}}``, see :func:`ensemble`."""
  members: Sequence[Recognizer]

  @property
  def attributes(self) -> Sequence[tuple[str, int]]:
    return self.members[0].attributes

  def __call__(self, images: jax.Array) -> dict[str, Any]:
    outs = [member(images) for member in self.members]
    logits = {name: jnp.log(jnp.mean(jnp.stack([jax.nn.softmax(out["logits"][name], axis=-1)
                                                 for out in outs]), axis=0))
              for name, _ in self.members[0].attributes}
    return {"embedding": jnp.concatenate([out["embedding"] for out in outs], axis=-1),
            "logits": logits}


def ensemble(recognizers: Sequence[tuple[Recognizer, Any]]) -> tuple[Ensemble, dict]:
  """``(Ensemble, variables)`` of ``(module, variables)`` pairs that name the same attributes
  (a ValueError otherwise)."""
  if not recognizers:
    raise ValueError("an ensemble needs at least one recognizer")
  heads = [tuple(module.attributes) for module, _ in recognizers]
  if any(h != heads[0] for h in heads):
    raise ValueError(f"the recognizers of an ensemble must name the same attributes and "
                     f"classes; got {sorted(set(heads))}")
  # clones: one module object given twice would be one shared member (one set of weights)
  return (Ensemble(members=tuple(module.clone() for module, _ in recognizers)),
          {"params": {f"members_{i}": variables["params"]
                      for i, (_, variables) in enumerate(recognizers)}})


@dataclasses.dataclass(frozen=True)
class SpatialTaps:
  """A recognizer seen as a feature network for L_per / L_style (eq. 6-7), in place of VGG-19.

  ``apply(variables, images)`` returns ``{"level{i}": (N, h, w, C)}``: the feature map of each
  level (32, 16, 8 and 4 px for a 64 px input and the default widths), the embedding left out
  (the loss terms weigh regions of a map by the mask). Called as
  ``VGG19Features.apply(variables, images)`` is, with the recognizer's own variables.
  """
  module: Recognizer

  def apply(self, variables, images: jax.Array) -> dict[str, jax.Array]:
    maps = self.module.apply(variables, images, method="features")[:-1]
    return {f"level{i}": m for i, m in enumerate(maps)}


def from_config(config: dict) -> Recognizer:
  """Builds the module of a ``kind == "toy_recognizer"`` directory (or a ConfigDict).

  ``attributes`` lists ``[name, [class names]]`` per head, in label order (a dict such as
  ``toy_faces.ATTRIBUTES`` works too); the other fields are :class:`Recognizer`'s.
  """
  config = config.to_dict() if hasattr(config, "to_dict") else dict(config)
  attributes = config.pop("attributes")
  # [[name, [class names]], ...] keeps the head order through JSON files written with
  # sort_keys; a dict (ordered) is accepted too.
  attributes = dict(attributes) if not isinstance(attributes, dict) else attributes
  known = {"widths", "feature_dim", "bottleneck", "input_size", "groups"}
  unknown = sorted(set(config) - known)
  if unknown:
    raise ValueError(f"toy recognizer config has unknown fields {unknown}; known: "
                     f"{sorted(known | {'attributes'})}")
  if "widths" in config:
    config["widths"] = tuple(config["widths"])
  return Recognizer(attributes=tuple((str(k), len(v)) for k, v in attributes.items()), **config)


def architecture(config: Any, attributes: dict[str, Sequence[str]]) -> dict:
  """The JSON-able architecture of ``config.recognizer`` (the converted ``config.json``)."""
  c = config.to_dict() if hasattr(config, "to_dict") else dict(config)
  return {"widths": [int(v) for v in c["widths"]], "feature_dim": int(c["feature_dim"]),
          "bottleneck": int(c["bottleneck"]), "input_size": int(c["input_size"]),
          "groups": int(c["groups"]),
          "attributes": [[name, list(classes)] for name, classes in attributes.items()]}
