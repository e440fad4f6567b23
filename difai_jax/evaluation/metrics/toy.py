"""Toy-domain measures: what the toy-face recognizer says about faces and their completions.

Not the paper's metrics. DiFAI (Yoon et al.) reports FID with pytorch-fid's Inception and shows
diversity by eye; on the procedural toy faces (``difai_jax/data/toy_faces.py``) there are no
ImageNet weights, but the renderer knows every face's attributes, and a recognizer trained on
them (``difai_jax/models/recognizer.py``) gives measures that need no download. They read the
shipped **judge** (``toy-judge``, ``difai_jax/assets/toy/judge``, configs/toy_judge.py) unless
told otherwise: a recognizer that no training loss uses (``toy-recognizer``, trained the same way
from another seed, is the toy pSp's perceptual network, so measuring with it would reward what
the pSp was trained to match). Every one is a **toy-domain** measure: its numbers compare toy
runs with each other, never with the paper's CelebA-HQ numbers. Printed names carry the label
(:data:`DISPLAY_NAMES`).

* :func:`toy_fid`: the Frechet distance between two sets of recognizer embeddings (the 128-d
  layer before the attribute heads), computed as pytorch-fid does (``metrics.fid``).
* :func:`predict_attributes`: the predicted class and its softmax probability per attribute.
* :func:`attribute_diversity`: for the K completions of one input, how many differ from
  completion 0 (the unperturbed code's) in at least one predicted attribute, the share of all
  pairs that differ so, the number of distinct attribute combinations, and per attribute the
  share of pairs that differ in it.
* Plausibility, two ways: :func:`attribute_confidence` (the mean over attributes of the top
  softmax probability: a face whose hair, beard, glasses, mouth ... the recognizer can name) and
  :class:`RealFeatureModel` / :func:`plausible_fraction` (the share of faces whose embedding lies
  inside the real faces' feature distribution: Mahalanobis distance to the real faces' mean below
  the ``quantile`` of held-out real faces' own distances, so real faces score ~``quantile``).
* :func:`evaluate_recognizer`: per-attribute accuracy on toy test-split faces;
  :func:`quality_record` measures what ``quality.json`` beside a shipped recognizer holds
  (:func:`recognizer_quality` reads it), with the attributes it names reliably
  (:func:`reliable_attributes`: not the mouth nor earrings); ``python -m benchmarks.toy_quality
  --only_recognizer`` prints it.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from difai_jax import pretrained
from difai_jax.data import image_io
from difai_jax.data import toy_faces
from difai_jax.evaluation.metrics import fid as fid_lib

LABEL = "toy-domain"
DISPLAY_NAMES = {
    "toy_fid": "toy-domain FID (recognizer features)",
    "attribute_diversity": "toy-domain attribute diversity (completions differing from #0)",
    "pairwise_attribute_diversity": "toy-domain attribute diversity (pairs differing)",
    "distinct_attribute_sets": "toy-domain distinct attribute sets per input",
    "attribute_confidence": "toy-domain plausibility (mean top attribute probability)",
    "plausible_fraction": "toy-domain plausibility (share inside the real feature distribution)",
    "recognizer_accuracy": "toy-domain recognizer accuracy",
}
# The recognizer every measure here reads by default: the shipped judge, trained like
# toy-recognizer from another seed and used by no training loss (toy-recognizer feeds the toy
# pSp's perceptual term; a measure taken with it would reward what the pSp was trained to match).
DEFAULT_JUDGE = os.path.join(pretrained.ASSETS_DIR, pretrained.SHORT_NAMES["toy-judge"])
# The toy test split (data.sources): indices [num_train, num_train + num_test) of the stream.
TEST_START = 28000
TEST_SIZE = 2000


def load_toy_recognizer(path: str | os.PathLike | None = None):
  """``(module, variables)`` of a toy recognizer directory (or short name: ``toy-judge``,
  ``toy-recognizer``); the shipped judge by default."""
  path = pretrained.resolve(path) if path is not None else DEFAULT_JUDGE
  if not os.path.isfile(os.path.join(path, "config.json")):
    raise FileNotFoundError(
        f"no toy recognizer in {path} (no config.json). Train and export one: python -m "
        "difai_jax.train --config configs/toy_recognizer.py --workdir runs/toy_recognizer, then "
        "python -m difai_jax.export --workdir runs/toy_recognizer --out DIR")
  kind = pretrained.read_config(path)["kind"]
  if kind != "toy_recognizer":
    raise ValueError(f"{path} holds a {kind!r} model, not a toy_recognizer")
  return pretrained.load(path)


def recognizer_quality(path: str | os.PathLike | None = None) -> dict | None:
  """The measured quality (``quality.json``: test accuracy per attribute, majority-class rates,
  the training command) beside a recognizer directory; None if it has none."""
  path = pretrained.resolve(path) if path is not None else DEFAULT_JUDGE
  quality = os.path.join(path, "quality.json")
  if not os.path.isfile(quality):
    return None
  with open(quality, encoding="utf-8") as f:
    return json.load(f)


def reliable_attributes(path: str | os.PathLike | None = None) -> tuple[str, ...]:
  """Attributes the recognizer at ``path`` (the shipped judge by default) names reliably: test
  accuracy at least 5 points above always guessing the most common class. The shipped 64 px
  recognizer does not tell the mouth (neutral / smile / open: a few pixels at 64 px) or earrings
  (a pixel) apart, so :func:`attribute_diversity` should not count them. All attributes when the
  directory has no ``quality.json``."""
  quality = recognizer_quality(path)
  if quality is None:
    return toy_faces.ATTRIBUTE_NAMES
  return tuple(quality["reliable_attributes"])


@functools.lru_cache(maxsize=8)
def _apply_fn(module):
  return jax.jit(module.apply)


def _batched(module, variables, images, batch_size: int):
  """Runs the recognizer over (..., H, W, 3) images in batches; outputs with the leading dims."""
  images = np.asarray(images, np.float32)
  if images.ndim < 4 or images.shape[-1] != 3:
    raise ValueError(f"expected images (..., H, W, 3) in [-1, 1], got shape {images.shape}")
  lead = images.shape[:-3]
  flat = images.reshape((-1,) + images.shape[-3:])
  apply = _apply_fn(module)
  outs = []
  for i in range(0, flat.shape[0], batch_size):
    chunk = flat[i:i + batch_size]
    n = chunk.shape[0]
    if n < batch_size and flat.shape[0] > batch_size:   # one compiled shape for every batch
      chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - n, axis=0)])
    out = jax.device_get(apply(variables, jnp.asarray(chunk)))
    outs.append(jax.tree.map(lambda x, n=n: np.asarray(x)[:n], out))
  out = jax.tree.map(lambda *xs: np.concatenate(xs, axis=0), *outs)
  return jax.tree.map(lambda x: x.reshape(lead + x.shape[1:]), out)


def recognizer_features(module, variables, images, batch_size: int = 250) -> np.ndarray:
  """Toy-domain features: the recognizer's (..., D) embeddings of (..., H, W, 3) images."""
  return _batched(module, variables, images, batch_size)["embedding"]


class AttributePredictions(NamedTuple):
  """Toy-domain attribute predictions of (..., H, W, 3) images.

  Attributes:
    names: attribute names, the order of the last axis below.
    labels: int32 (..., A) predicted class per attribute.
    confidence: float32 (..., A) softmax probability of the predicted class.
    embedding: float32 (..., D) recognizer features (for :func:`toy_fid`).
  """
  names: tuple[str, ...]
  labels: np.ndarray
  confidence: np.ndarray
  embedding: np.ndarray


def predict_attributes(module, variables, images, batch_size: int = 250) -> AttributePredictions:
  """Toy-domain: the recognizer's predicted attributes of (..., H, W, 3) images in [-1, 1]."""
  out = _batched(module, variables, images, batch_size)
  names = tuple(name for name, _ in module.attributes)
  probs = [jax.nn.softmax(out["logits"][name], axis=-1) for name in names]
  labels = np.stack([np.argmax(p, axis=-1) for p in probs], axis=-1).astype(np.int32)
  confidence = np.stack([np.max(p, axis=-1) for p in probs], axis=-1).astype(np.float32)
  return AttributePredictions(names, labels, confidence, out["embedding"])


def toy_fid(features_a, features_b) -> float:
  """Toy-domain FID: the Frechet distance between two (N, D) sets of recognizer features
  (pytorch-fid's formula in float64, ``metrics.fid.frechet_distance``). Needs N > D per set for
  a full-rank covariance (D = 128 for the shipped recognizer)."""
  return fid_lib.fid_from_features(np.asarray(features_a, np.float64),
                                   np.asarray(features_b, np.float64))


def attribute_diversity(labels, names: Sequence[str] | None = None,
                        attributes: Sequence[str] | None = None) -> dict[str, Any]:
  """Toy-domain diversity of the K completions of one input (or of each of N inputs).

  Args:
    labels: int (K, A) predicted attributes of K completions (completion 0: the unperturbed
      code's), or (N, K, A) for N inputs.
    names: the A attribute names (for the per-attribute shares), e.g.
      ``AttributePredictions.names``.
    attributes: count differences in these attributes only (needs ``names``), e.g.
      :func:`reliable_attributes` so that a head near chance level adds no noise.

  Returns (per input, shape (N,) for (N, K, A) labels; averaged in ``*_mean`` keys):
    ``differ_from_first``: how many of completions 1..K-1 differ from completion 0 in at least
      one attribute (0..K-1);
    ``pairwise``: the share of the K(K-1)/2 pairs that differ in at least one attribute;
    ``distinct``: the number of distinct attribute combinations among the K (1..K);
    ``per_attribute`` (with ``names``): per attribute, the share of pairs differing in it
      (averaged over inputs).
  """
  labels = np.asarray(labels)
  if attributes is not None:
    if names is None:
      raise ValueError("attribute_diversity(attributes=...) needs the column names (names=...)")
    unknown = sorted(set(attributes) - set(names))
    if unknown:
      raise ValueError(f"unknown attributes {unknown}; the labels have {list(names)}")
    columns = [list(names).index(a) for a in attributes]
    labels, names = labels[..., columns], list(attributes)
  single = labels.ndim == 2
  if single:
    labels = labels[None]
  if labels.ndim != 3:
    raise ValueError(f"labels must be (K, A) or (N, K, A), got shape {labels.shape}")
  n, k, a = labels.shape
  if k < 2:
    raise ValueError(f"diversity needs K >= 2 completions per input, got {k}")
  differ_first = np.any(labels[:, 1:] != labels[:, :1], axis=-1).sum(axis=1)        # (N,)
  pairs = list(itertools.combinations(range(k), 2))
  i, j = np.array(pairs).T
  pair_diff = labels[:, i] != labels[:, j]                                            # (N, P, A)
  pairwise = np.any(pair_diff, axis=-1).mean(axis=1)
  distinct = np.array([len({tuple(row) for row in x}) for x in labels])
  out = {"differ_from_first": differ_first, "pairwise": pairwise, "distinct": distinct}
  if names is not None:
    if len(names) != a:
      raise ValueError(f"{len(names)} names for {a} attributes")
    shares = pair_diff.mean(axis=(0, 1))
    out["per_attribute"] = {name: float(s) for name, s in zip(names, shares)}
  if single:
    out.update({key: out[key][0].item() for key in ("differ_from_first", "pairwise", "distinct")})
  else:
    out.update({f"{key}_mean": float(np.mean(out[key]))
                for key in ("differ_from_first", "pairwise", "distinct")})
  return out


def attribute_frequency_gaps(labels_a, labels_b, names: Sequence[str],
                             attributes: Sequence[str] | None = None) -> dict[str, float]:
  """Per attribute, how far apart two sets' predicted class frequencies are: the total
  variation distance in percentage points, ``50 * sum_c |p_a(c) - p_b(c)|`` (0: the same
  frequencies; 100: no class in common), e.g. a generator's samples against real faces.

  Args:
    labels_a, labels_b: int (N, A) and (M, A) predicted attributes
      (``AttributePredictions.labels``).
    names: the A attribute names; ``attributes``: the ones to report (default: all).
  """
  labels_a, labels_b = np.asarray(labels_a), np.asarray(labels_b)
  gaps = {}
  for name in attributes if attributes is not None else names:
    column = list(names).index(name)
    classes = int(max(labels_a[:, column].max(), labels_b[:, column].max())) + 1
    p = np.bincount(labels_a[:, column], minlength=classes) / len(labels_a)
    q = np.bincount(labels_b[:, column], minlength=classes) / len(labels_b)
    gaps[name] = float(50.0 * np.abs(p - q).sum())
  return gaps


def attribute_confidence(predictions: AttributePredictions) -> np.ndarray:
  """Toy-domain plausibility score per image: the mean over attributes of the predicted class's
  softmax probability, in [1/C, 1]. Compare with the same score of real toy faces."""
  return predictions.confidence.mean(axis=-1)


class RealFeatureModel(NamedTuple):
  """A Gaussian model of real faces' recognizer features, for :func:`plausible_fraction`.

  Attributes:
    mean: (D,) mean of the fitting half of the real features.
    precision: (D, D) inverse of their covariance, shrunk towards its diagonal mean (``ridge``).
    threshold: the ``quantile`` of the held-out half's Mahalanobis distances.
    quantile: the share of real faces inside the threshold, by construction.
  """
  mean: np.ndarray
  precision: np.ndarray
  threshold: float
  quantile: float

  @classmethod
  def fit(cls, real_features, quantile: float = 0.99, ridge: float = 1e-3) -> "RealFeatureModel":
    """Fits the mean and covariance on even rows, sets the threshold on the odd rows."""
    f = np.asarray(real_features, np.float64)
    if f.ndim != 2 or f.shape[0] < 4:
      raise ValueError(f"need (N >= 4, D) real features, got shape {f.shape}")
    fit, held = f[0::2], f[1::2]
    mean = fit.mean(axis=0)
    cov = np.cov(fit, rowvar=False)
    cov = cov + ridge * np.trace(cov) / cov.shape[0] * np.eye(cov.shape[0])
    precision = np.linalg.inv(cov)
    model = cls(mean, precision, 0.0, float(quantile))
    return model._replace(threshold=float(np.quantile(model.distances(held), quantile)))

  def distances(self, features) -> np.ndarray:
    """Mahalanobis distances of (..., D) features to the real mean."""
    d = np.asarray(features, np.float64) - self.mean
    return np.sqrt(np.maximum(np.einsum("...i,ij,...j->...", d, self.precision, d), 0.0))


def plausible_fraction(model: RealFeatureModel, features) -> float:
  """Toy-domain plausibility of a set: the share of (..., D) features inside the real faces'
  distribution (Mahalanobis distance <= ``model.threshold``); real faces give ~``quantile``."""
  return float(np.mean(model.distances(features) <= model.threshold))


def toy_test_faces(num_faces: int, size: int = 64, toy_seed: int = 0, start: int = TEST_START):
  """(images float32 (N, size, size, 3) in [-1, 1], labels int32 (N, A)) of toy test faces
  ``start .. start + num_faces - 1`` of stream ``toy_seed``, labels in ``ATTRIBUTE_NAMES`` order."""
  images, labels = [], []
  for index in range(start, start + num_faces):
    image, label = toy_faces.render_face_with_attributes(toy_seed, index, size)
    images.append(image)
    labels.append(toy_faces.attribute_vector(label))
  return image_io.uint8_to_float(np.stack(images)), np.stack(labels)


def evaluate_recognizer(module, variables, num_faces: int = 2000, size: int = 64,
                        toy_seed: int = 0, start: int = TEST_START,
                        faces: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, float]:
  """Toy-domain recognizer accuracy per attribute (and their ``mean``) on toy test faces.

  ``faces``: ``(images, labels)`` as :func:`toy_test_faces` returns them (rendered if None).
  """
  images, labels = faces if faces is not None else toy_test_faces(num_faces, size, toy_seed,
                                                                  start)
  return _accuracy(predict_attributes(module, variables, images), labels)


def _accuracy(pred: AttributePredictions, labels) -> dict[str, float]:
  order = [pred.names.index(name) for name in toy_faces.ATTRIBUTE_NAMES]
  correct = pred.labels[:, order] == labels
  acc = {name: float(correct[:, i].mean()) for i, name in enumerate(toy_faces.ATTRIBUTE_NAMES)}
  acc["mean"] = float(np.mean(list(acc.values())))
  return acc


def quality_record(module, variables, num_faces: int = 2000, size: int = 64,
                   margin: float = 0.05) -> dict[str, Any]:
  """What a shipped recognizer's ``quality.json`` holds, measured on ``num_faces`` toy test faces:
  per-attribute ``accuracy`` and ``majority_rate`` (always guessing the most common class),
  ``reliable_attributes`` (accuracy at least ``margin`` above the majority rate), the toy FID
  between the two halves of the test faces, their mean ``attribute_confidence`` and the share of
  them inside the real feature distribution fitted on as many train-split faces."""
  images, labels = toy_test_faces(num_faces, size)
  pred = predict_attributes(module, variables, images)
  accuracy = _accuracy(pred, labels)
  majority = {name: float(np.bincount(labels[:, i]).max() / len(labels))
              for i, name in enumerate(toy_faces.ATTRIBUTE_NAMES)}
  train, _ = toy_test_faces(num_faces, size, start=TEST_START - num_faces)
  model = RealFeatureModel.fit(predict_attributes(module, variables, train).embedding)
  half = num_faces // 2
  return {
      "measure": LABEL, "test_faces": f"toy seed 0, indices {TEST_START}..."
                                      f"{TEST_START + num_faces - 1}, {size} px",
      "accuracy": {k: round(v, 4) for k, v in accuracy.items()},
      "majority_rate": {k: round(v, 4) for k, v in majority.items()},
      "reliable_attributes": [name for name in toy_faces.ATTRIBUTE_NAMES
                              if accuracy[name] >= majority[name] + margin],
      "toy_fid_between_real_halves": round(
          toy_fid(pred.embedding[:half], pred.embedding[half:]), 3),
      "attribute_confidence_real": round(float(attribute_confidence(pred).mean()), 4),
      "plausible_fraction_real_heldout": round(plausible_fraction(model, pred.embedding), 4)}
