"""Toy-domain feature probes for ``difai_jax.evaluate`` (``--feature_probes
difai_jax.evaluation.metrics.toy_probes:probes``): the shipped toy judge (``toy-judge``, the
recognizer no training loss uses) inside the evaluation step.

- ``toy_fid``: a Frechet distance in the judge's embedding space between the scored
  completions and the real test faces (a toy-domain FID; no Inception weights needed);
- ``toy_attributes``: per completion, the recognizer's predicted attribute classes, saved as
  ``toy_attributes_<bucket>.npz`` (``values`` (n, K, A)) so that
  ``metrics.toy.attribute_diversity`` can count how many of the K completions of one face
  differ in some attribute (beard, glasses, mouth, hair, ...).
- ``toy_embedding``: per completion, the recognizer's embedding, saved as
  ``toy_embedding_<bucket>.npz`` (``values`` (n, K, D)), for ``metrics.toy.plausible_fraction``
  (the share of completions inside the real faces' feature distribution).
All are toy-domain measures: they say nothing about real faces.
"""

from __future__ import annotations

import jax.numpy as jnp

from difai_jax.evaluation.metrics import toy
from difai_jax.evaluation.scoring import FeatureProbe


def probes(image_size: int):
  """[(FeatureProbe, variables)] of the shipped toy judge (it resizes any input size)."""
  del image_size
  module, variables = toy.load_toy_recognizer()
  names = [name for name, _ in module.attributes]

  def embedding(v, images):
    return module.apply(v, images)["embedding"]

  def attributes(v, images):
    logits = module.apply(v, images)["logits"]
    return jnp.stack([jnp.argmax(logits[n], axis=-1) for n in names], axis=-1).astype(jnp.float32)

  return [(FeatureProbe("toy_fid", embedding, cache_tag="_toy_judge"), variables),
          (FeatureProbe("toy_attributes", attributes, frechet=False, per_completion=True),
           variables),
          (FeatureProbe("toy_embedding", embedding, frechet=False, per_completion=True),
           variables)]
