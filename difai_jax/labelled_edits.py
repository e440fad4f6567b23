"""Attribute edits of W+ from labelled faces, each made as small as a recognizer needs (not the
paper).

DiFAI perturbs pSp's code with SeFa directions (eq. 3): unsupervised, the same degree for every
face, so a perturbed completion often repaints the hole far from the face (on the toy faces,
~2x Telea's hole error at degree 5, README). With labelled faces there is a more direct handle:

* **Directions from labels.** Per attribute and class, the mean pSp code of the labelled faces
  of that class (:meth:`LabelledEdits.from_codes`); an edit moves a face's code from its own
  class's mean towards another class's, ``w + strength * (mean[target] - mean[own])`` ("own":
  the class whose mean is nearest the code). Each attribute's *region* is where such moves
  change the style image (:meth:`LabelledEdits.with_regions`), so the edits whose change falls
  inside a hole can be picked first and a *local* edit can change the style image only there.
* **The least edit a recognizer reads** (:func:`minimal_edits`). Per image and attribute (and
  per target class), strengths are tried in increasing order until a recognizer (trained on the
  same labels; never the network that scores the results) reads the completion as another
  class; of all edits so found, the K - 1 kept are those read as changes, the least change of
  the hole first.

On the toy faces (``python -m benchmarks.toy_inpainting --edits labelled ...``, README "Honest
state") this keeps the perturbed completions near Telea's hole error while most differ from
completion 00 in an attribute the judge recognises. ``python -m difai_jax.fit_edits`` writes the
directions of a run (``labelled_edits.npz`` beside its ``sefa.npz``); :class:`~difai_jax.
inference.inpainter.Inpainter` uses them with ``edits="labelled"``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import zipfile
from typing import Callable, NamedTuple, Sequence

import jax
import numpy as np

from difai_jax import pipeline
from difai_jax import pretrained
from difai_jax.data import toy_faces
from difai_jax.evaluation.metrics import toy
from difai_jax.models import recognizer as recognizer_lib
from difai_jax.nn import fingerprint

FILE_NAME = "labelled_edits.npz"
# The toy attributes the edits may change: those the judge recognises reliably, but skin tone
# (it recolours the whole hole).
TOY_ATTRIBUTES = ("hair_style", "hair_colour", "beard", "moustache", "glasses", "lipstick")
# The search settings measured best on the toy faces (README, "Honest state"): strengths up to
# 16, six attributes searched per image, a change counted at probability 0.9, each target class
# on its own, local edits at half the region's peak.
STRENGTHS = (0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 11.0, 16.0)
POOL, MARGIN, LOCAL = 6, 0.9, 0.5


@dataclasses.dataclass
class LabelledEdits:
  """Edits along attribute directions of W+ found from labels.

  ``means[attribute][class]``: the (L, D) mean pSp code of the labelled faces of that class;
  ``regions[attribute]``: (H, W) where moving codes between its classes changes the style
  image, normalised to sum 1; ``psp``: the fingerprint of the pSp whose codes these are (its
  variables, :func:`difai_jax.nn.fingerprint`; "" when unknown).
  """
  means: dict
  regions: dict
  strength: float = 1.0
  psp: str = ""
  class_names: dict = dataclasses.field(default_factory=dict)   # attribute -> {class: name}

  def describe(self, attribute: int, target: int) -> str:
    """``"hair_colour -> red"`` for the ``attribute``-th edit (an index into ``regions``)
    towards class ``target`` (its number when the file names no classes)."""
    name = list(self.regions)[attribute]
    return f"{name} -> {self.class_names.get(name, {}).get(target, target)}"

  @classmethod
  def from_codes(cls, codes: np.ndarray, labels: np.ndarray, names: Sequence[str],
                 attributes: Sequence[str], min_count: int = 30) -> "LabelledEdits":
    """Class means of ``codes`` (N, L, D) by ``labels`` (N, len(names)) int classes, for each
    of ``attributes``; classes with fewer than ``min_count`` faces are left out. No regions
    yet (:meth:`with_regions`)."""
    unknown = sorted(set(attributes) - set(names))
    if unknown:
      raise ValueError(f"attributes {unknown} are not among the labels' {list(names)}")
    means = {}
    for attribute in attributes:
      column = labels[:, list(names).index(attribute)]
      classes = [c for c in np.unique(column) if np.sum(column == c) >= min_count]
      if len(classes) < 2:
        raise ValueError(f"{attribute}: fewer than two classes with {min_count} faces among "
                         f"the {len(codes)} labelled")
      means[attribute] = {int(c): codes[column == c].mean(axis=0) for c in classes}
    return cls(means, {})

  def with_regions(self, decode: Callable[[np.ndarray], np.ndarray], codes: np.ndarray,
                   seed: int = 0) -> "LabelledEdits":
    """Each attribute's region: the mean absolute change of ``decode`` (codes (n, L, D) ->
    style images (n, H, W, 3)) when ``codes`` move to another class (:meth:`move`)."""
    base = decode(codes)
    rng = np.random.default_rng(seed)
    for attribute in self.means:
      change = np.abs(decode(self.move(attribute, codes, rng)) - base).mean(axis=(0, 3))
      self.regions[attribute] = change / change.sum()
    return self

  @classmethod
  def fit_toy(cls, models: pipeline.Models, variables, attributes=TOY_ATTRIBUTES,
              num_faces: int = 3000, min_count: int = 30, seed: int = 0,
              strength: float = 1.0) -> "LabelledEdits":
    """From the pSp of a toy run: class means over the codes of toy train faces
    0 .. num_faces - 1 (their true labels), regions from 200 of those codes moved."""
    size = int(models.image_size)
    encode = jax.jit(lambda x: pipeline.invert(models.psp, variables["psp"], x))
    decode_one = jax.jit(lambda w: pipeline.style_images(models.psp, variables["psp"], w[None],
                                                         size, models.psp_decode_size)[0])
    faces, labels = toy.toy_test_faces(num_faces, size, start=0)
    codes = np.concatenate([np.asarray(encode(faces[s:s + 250]))
                            for s in range(0, num_faces, 250)])
    decode = lambda w: np.concatenate([np.asarray(decode_one(w[s:s + 50]))
                                       for s in range(0, len(w), 50)])
    edits = cls.from_codes(codes, labels, toy_faces.ATTRIBUTE_NAMES, attributes, min_count)
    edits.strength, edits.psp = strength, fingerprint(variables["psp"])
    edits.class_names = {a: dict(enumerate(toy_faces.ATTRIBUTES[a])) for a in attributes}
    return edits.with_regions(decode, codes[:200], seed)

  # --------------------------------------------------------------------------------------------
  # Files
  # --------------------------------------------------------------------------------------------

  def save(self, path: str) -> None:
    """Writes the means, regions and pSp fingerprint to ``path`` (.npz, no pickles)."""
    arrays = {"psp": np.asarray(self.psp)}
    for attribute, classes in self.means.items():
      for c in sorted(classes):
        arrays[f"mean/{attribute}/{c}"] = np.asarray(classes[c], np.float32)
      arrays[f"region/{attribute}"] = np.asarray(self.regions[attribute], np.float32)
      named = self.class_names.get(attribute, {})
      if named:
        arrays[f"classes/{attribute}"] = np.asarray([named.get(c, str(c))
                                                     for c in sorted(classes)])
    with open(path, "wb") as f:
      np.savez(f, **arrays)

  @classmethod
  def load(cls, path: str) -> "LabelledEdits":
    """What :meth:`save` wrote; a ValueError naming the file when it is not such a file."""
    try:
      with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
      raise ValueError(f"{path}: not a labelled-edits file ({e}); write one with python -m "
                       "difai_jax.fit_edits") from None
    means, regions, names = {}, {}, {}
    try:
      for key, value in arrays.items():
        kind, _, rest = key.partition("/")
        if kind == "mean":
          attribute, c = rest.rsplit("/", 1)
          means.setdefault(attribute, {})[int(c)] = value
        elif kind == "region":
          regions[rest] = value
        elif kind == "classes":
          names[rest] = [str(v) for v in value]
      psp = str(arrays["psp"])
      class_names = {a: dict(zip(sorted(means[a]), n, strict=True)) for a, n in names.items()}
    except (KeyError, ValueError) as e:
      raise ValueError(f"{path}: not a labelled-edits file (bad entry: {e})") from None
    if not means or set(means) != set(regions) or any(len(m) < 2 for m in means.values()):
      raise ValueError(f"{path}: not a labelled-edits file (each attribute needs a region and "
                       "two or more class means)")
    mean_shapes = {v.shape for m in means.values() for v in m.values()}
    region_shapes = {r.shape for r in regions.values()}
    every = [v for m in means.values() for v in m.values()] + list(regions.values())
    if (len(mean_shapes) != 1 or len(next(iter(mean_shapes))) != 2 or len(region_shapes) != 1
        or len(next(iter(region_shapes))) != 2
        or not all(np.issubdtype(v.dtype, np.floating) and np.isfinite(v).all() for v in every)):
      raise ValueError(f"{path}: not a labelled-edits file (class means must be finite (L, D) "
                       "codes of one shape, regions finite (H, W) maps of one shape)")
    return cls(means, {a: regions[a] for a in means}, psp=psp, class_names=class_names)

  # --------------------------------------------------------------------------------------------
  # Edits
  # --------------------------------------------------------------------------------------------

  def nearest(self, attribute: str, codes: np.ndarray) -> np.ndarray:
    """(N,) the class whose mean code is nearest each of ``codes`` (N, L, D)."""
    classes = sorted(self.means[attribute])
    distance = np.stack([np.square(codes - self.means[attribute][c]).sum(axis=(1, 2))
                         for c in classes], axis=1)
    return np.asarray(classes)[distance.argmin(axis=1)]

  def move(self, attribute: str, codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each code plus ``strength`` x (another class's mean - its nearest class's mean), the
    class at random."""
    current = self.nearest(attribute, codes)
    classes = sorted(self.means[attribute])
    out = np.empty_like(codes)
    for i, c in enumerate(current):
      others = [k for k in classes if k != c]
      target = others[rng.integers(len(others))]
      out[i] = codes[i] + self.strength * (self.means[attribute][target]
                                           - self.means[attribute][c])
    return out

  def weight(self, attribute: str, level: float) -> np.ndarray:
    """(H, W) in [0, 1]: ``attribute``'s region over ``level`` x its largest value, clipped at 1
    (1 where its edits change the style image most, falling to 0 where they hardly do)."""
    region = self.regions[attribute]
    return np.minimum(region / (level * region.max()), 1.0).astype(np.float32)

  def ranked(self, masks: np.ndarray) -> np.ndarray:
    """(N, A) indices into ``regions``: per image, the attributes by how much of their region
    lies inside its hole (masks (N, H, W, 1), 1 = known), most first."""
    hole = 1.0 - masks[..., 0]
    inside = np.stack([(hole * r).sum(axis=(1, 2)) for r in self.regions.values()], axis=1)
    return np.argsort(-inside, axis=1, kind="stable")

  def latents(self, w_plus: np.ndarray, masks: np.ndarray, count: int,
              rng: np.random.Generator) -> np.ndarray:
    """(1 + count, N, L, D): W+ and, per image, one edit of each of the ``count`` attributes
    whose region weighs most inside its hole (masks (N, H, W, 1), 1 = known)."""
    names = list(self.regions)
    if count > len(names):
      raise ValueError(f"{count} edits asked; only {len(names)} attributes: {names}")
    order = self.ranked(masks)
    out = [w_plus]
    for k in range(count):
      moved = np.empty_like(w_plus)
      for j, attribute in enumerate(names):
        chosen = order[:, k] == j
        if chosen.any():
          moved[chosen] = self.move(attribute, w_plus[chosen], rng)
      out.append(moved)
    return np.stack(out)


def load_for_run(difai_dir: str, psp_variables=None) -> LabelledEdits:
  """The labelled edits of a DiFAI run (``labelled_edits.npz`` in its ``difai`` stage folder);
  with ``psp_variables``, checked to be fitted on that pSp's codes."""
  path = os.path.join(difai_dir, FILE_NAME)
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f"{difai_dir} has no {FILE_NAME} (the attribute directions of edits='labelled'); fit "
        f"them from labelled faces: python -m difai_jax.fit_edits --checkpoint RUN")
  edits = LabelledEdits.load(path)
  if psp_variables is not None and edits.psp and edits.psp != fingerprint(psp_variables):
    raise ValueError(f"{path} was fitted on the codes of another pSp (fingerprint {edits.psp}) "
                     f"than the run's ({fingerprint(psp_variables)}); fit them again: python -m "
                     "difai_jax.fit_edits --checkpoint RUN")
  return edits


def load_recognizer(spec: str, option: str = "edit_recognizer"):
  """``(module, variables)`` of the recognizer a search reads (a directory or short name,
  e.g. ``toy-recognizer``), or of several read as one (comma-separated: their mean
  probabilities, :class:`~difai_jax.models.recognizer.Ensemble`); the toy judge (also a copy of
  it) is refused, since it scores what the search picks."""
  names = [name.strip() for name in str(spec).split(",")]
  if not all(names):
    raise ValueError(f"{option} = {spec!r}: an empty recognizer name")
  loaded = []
  for name in names:
    module, variables = toy.load_toy_recognizer(name)
    pretrained.refuse_the_judge(option, name, variables,
                                why="it scores the edits the search picks")
    loaded.append((module, variables))
  return loaded[0] if len(loaded) == 1 else recognizer_lib.ensemble(loaded)


@dataclasses.dataclass(frozen=True)
class Search:
  """How :func:`minimal_edits` searches (the defaults: measured best on the toy faces, README
  "Honest state"): the ``strengths`` tried, ``pool`` attributes searched per image, a change
  counted at probability ``margin``, each target class on its own (``per_class``), the ``local``
  levels (0: the whole image)."""
  strengths: tuple[float, ...] = STRENGTHS
  pool: int = POOL
  margin: float = MARGIN
  per_class: bool = True
  local: tuple[float, ...] = (LOCAL,)

  def problem(self) -> str | None:
    """What is wrong with these settings, or None."""
    if not self.strengths or min(self.strengths) <= 0:
      return f"search strengths must be positive, got {self.strengths}"
    if not 0.0 <= self.margin < 1.0:
      return f"search margin is a probability below 1, got {self.margin}"
    if not all(0.0 <= v <= 1.0 for v in self.local) or len(set(self.local)) < len(self.local):
      return (f"local levels are distinct fractions of a region's peak in [0, 1] (0: the whole "
              f"image), got {self.local}")
    return None

  def run(self, complete, edits: LabelledEdits, recognizer, faces, masks, w_plus, base,
          count: int, variants: int = 0) -> Searched:
    """:func:`minimal_edits` with these settings, all images in one chunk."""
    return minimal_edits(complete, edits, recognizer, faces, masks, w_plus, base, count,
                         self.strengths, chunk=len(faces), pool=self.pool, margin=self.margin,
                         per_class=self.per_class, local=self.local, variants=variants)


# ----------------------------------------------------------------------------------------------
# The search
# ----------------------------------------------------------------------------------------------


class Searched(NamedTuple):
  """What :func:`minimal_edits` found, per kept edit k (1 + count rows, row 0 = completion 00's)
  and image n.

  ``i_style``, ``completions``: (1 + count, N, H, W, 3); ``found`` (N,): how many of the searched
  edits the recognizer read as changes (the most any choice among them counts);
  ``attribute`` (count, N) int: index into the edits' attributes (-1: none, completion 00 again);
  ``target`` (count, N): the class it moved towards; ``strength`` (count, N); ``level``
  (count, N): the local level (0: the whole image); ``read`` (count, N) bool: read as a change.
  """
  i_style: np.ndarray
  completions: np.ndarray
  found: np.ndarray
  attribute: np.ndarray
  target: np.ndarray
  strength: np.ndarray
  level: np.ndarray
  read: np.ndarray


def minimal_edits(complete, edits: LabelledEdits, recognizer, faces, masks, w_plus,
                  base: np.ndarray, count: int, strengths: tuple[float, ...],
                  chunk: int = 50, pool: int | None = None, margin: float = 0.0,
                  agree: tuple = (), per_class: bool = False,
                  local: float | tuple[float, ...] = 0.0, variants: int = 0) -> Searched:
  """Per image, ``count`` attribute edits, each as small as the recognizer needs to read the
  completion as changed in it (:class:`Searched`).

  ``complete(faces, masks, latents (T, n, L, D)[, weight, base_style])`` -> (i_style,
  completions) (T, n, ...), e.g. :func:`make_complete_fn`; ``recognizer``: a ``(module,
  variables)`` pair read with :func:`toy.predict_attributes` (never the network that scores the
  results); ``faces`` / ``masks`` (N, H, W, 3 / 1) at the model's resolution, ``w_plus`` (N, L,
  D) their codes, ``base`` (2, N, H, W, 3) completion 00's style image and completion.

  The ``count`` attributes of :meth:`LabelledEdits.latents` (those that weigh most in the hole)
  are searched; with ``pool`` > ``count``, ``pool`` of them, and the ``count`` kept are those
  the recognizer reads as changed, the least hole change first (then the rest, the least change
  first). ``margin``: a change counts only where the recognizer gives the new class at least
  this probability. ``agree``: further recognizers that must each read a change too (each
  against its own reading of completion 00, at ``margin``).

  ``strengths`` are tried in increasing order, towards every other class; an edit stops at the
  first strength read as another class, keeping the class that moves the hole least. Unread at
  every strength, the edit the recognizer is least sure keeps the class is kept (with ``agree``,
  the recognizers' mean confidence in their first reading, 0 where one reads another class).

  ``per_class``: each target class is searched on its own (to its own least strength), so two
  kept edits may give one attribute two classes. ``local`` > 0: each edit changes the style
  image only inside its attribute's region (:meth:`LabelledEdits.weight` at this level);
  several levels (e.g. ``(0.5, 0.0)``; 0: the whole image) make each edit a candidate at each.
  ``chunk``: images per call of ``complete`` (a short chunk padded with its first image);
  ``variants``: candidates per call (padded with repeats: one compiled shape; 0: as many as
  the attribute has classes but its own)."""
  recognizers = (recognizer, *agree)
  levels = tuple(local) if isinstance(local, (tuple, list)) else (local,)
  classes = max(len(m) for m in edits.means.values()) - 1 if per_class else 1
  width = classes * len(levels)                          # slots per edit: (level, class)
  asked = max(count, pool or 0)
  searched = min(asked, len(edits.regions)) if per_class else asked
  if searched > len(edits.regions) or searched * classes < count:
    raise ValueError(f"{asked} edits asked; only {len(edits.regions)} attributes"
                     + (f" of at most {classes + 1} classes" if per_class else ""))
  order = edits.ranked(masks)[:, :searched]                            # (N, searched)
  before = [toy.predict_attributes(module, variables, base[1])
            for module, variables in recognizers]
  found = _Found.start(base, searched * width)
  for j, attribute in enumerate(edits.regions):
    jobs = np.argwhere(order == j)                                        # (image, edit k)
    labels = np.stack([b.labels[:, b.names.index(attribute)] for b in before])   # (R, N)
    for v, level in enumerate(levels):
      blend = (edits.weight(attribute, level), base[0]) if level else None
      candidates = functools.partial(_edit_candidates, complete, recognizers, edits, attribute,
                                     faces, masks, w_plus, base[1], margin=margin, local=blend,
                                     variants=variants)
      found.search(candidates, jobs, jobs[:, 1] * width + v * classes, classes, labels,
                   strengths, chunk, per_class, (j, level))
  if len(levels) > 1:
    found = found.best_level(len(levels), classes)
  return found.keep_cheapest(count)


@dataclasses.dataclass
class _Found:
  """What :func:`minimal_edits` keeps per slot (E) and image (N) as it searches."""
  styles: np.ndarray          # (1 + E, N, H, W, 3): [0] completion 00's, then each slot's
  completions: np.ndarray     # (1 + E, N, H, W, 3)
  read: np.ndarray            # (E, N): read as changed
  spent: np.ndarray           # (E, N): its mean hole change from completion 00
  doubt: np.ndarray           # (E, N): an unread one's confidence in the old class
  what: np.ndarray            # (E, N, 4): attribute index, target class, strength, level

  @classmethod
  def start(cls, base: np.ndarray, slots: int) -> "_Found":
    """Every slot holds completion 00 (``base``: its i_style and completion), none read."""
    n = base.shape[1]
    what = np.zeros((slots, n, 4))
    what[..., 0] = -1
    return cls(np.repeat(base[:1], 1 + slots, axis=0), np.repeat(base[1:], 1 + slots, axis=0),
               np.zeros((slots, n), bool), np.full((slots, n), np.inf),
               np.full((slots, n), np.inf), what)

  def search(self, candidates, jobs, first, classes: int, labels, strengths, chunk: int,
             per_class: bool, edit: tuple[int, float]):
    """Searches the edits ``jobs`` ((J, 2): image, edit) over ``strengths``, each into its
    ``classes`` slots from ``first`` (J,), until :func:`_take` finishes it.
    ``candidates(idx, labels, strength)``: :func:`_edit_candidates` of images ``idx``;
    ``edit``: (attribute index, local level), recorded with each kept candidate."""
    pending = np.arange(len(jobs))
    for strength in sorted(strengths):
      still = []
      for s in range(0, len(pending), chunk):
        part = pending[s:s + chunk]
        idx = np.concatenate([jobs[part, 0], np.repeat(jobs[part[:1], 0], chunk - len(part))])
        i_style, done, changed, cost, sure, targets = candidates(idx, labels[:, idx], strength)
        for n, job in enumerate(part):
          i, slots = jobs[job, 0], slice(first[job], first[job] + classes)
          taken, finished = _take(changed[:, n], cost[:, n], sure[:, n], self.read[slots, i],
                                  self.doubt[slots, i], per_class)
          for slot, t in taken:
            self.styles[1 + first[job] + slot, i] = i_style[t, n]
            self.completions[1 + first[job] + slot, i] = done[t, n]
            self.spent[first[job] + slot, i] = cost[t, n]
            self.what[first[job] + slot, i] = (edit[0], targets[t, n], strength, edit[1])
          if not finished:
            still.append(job)
      pending = np.asarray(still, dtype=int)

  def _pick(self, pick: np.ndarray) -> "_Found":
    """The slots ``pick`` (E', N) of each image, completion 00 first as before."""
    images = np.arange(pick.shape[1])[None]
    return _Found(np.concatenate([self.styles[:1], self.styles[1:][pick, images]]),
                  np.concatenate([self.completions[:1], self.completions[1:][pick, images]]),
                  self.read[pick, images], self.spent[pick, images], self.doubt[pick, images],
                  self.what[pick, images])

  def best_level(self, levels: int, classes: int) -> "_Found":
    """One candidate per (edit, class) out of its ``levels`` local levels (slot = (edit k,
    level v, class c) in that order): the one read as changed, the least hole change first,
    so that one change is never kept twice at two levels."""
    n = self.read.shape[1]
    shape = (-1, levels, classes, n)
    best = np.lexsort((self.spent.reshape(shape), ~self.read.reshape(shape)), axis=1)[:, 0]
    k, c, _ = np.indices(best.shape)
    return self._pick((k * levels * classes + best * classes + c).reshape(-1, n))

  def keep_cheapest(self, keep: int) -> Searched:
    """Per image, the ``keep`` slots read as changed, the least hole change first, then the
    others; ``found`` counts every slot read."""
    found = self.read.sum(axis=0)
    kept = self if keep == len(self.read) else self._pick(
        np.lexsort((self.spent, ~self.read), axis=0)[:keep])
    what = kept.what
    return Searched(kept.styles, kept.completions, found, what[..., 0].astype(int),
                    what[..., 1].astype(int), what[..., 2], what[..., 3], kept.read)


def _take(changed, cost, sure, read, doubt, per_class: bool):
  """What one edit's candidates at one strength ((T - 1,) each: read as changed, hole change,
  confidence in the old class) add to its slots: ``[(slot, candidate)]`` and whether the edit is
  finished. ``read`` / ``doubt`` (its slots' views) are updated in place. One slot: the first
  strength with a change keeps the changed candidate of least hole change and finishes; until
  then the least sure candidate so far is kept. ``per_class``: a slot per candidate, each kept
  at its own first change (or, until then, at its least confidence); finished when all are."""
  if not per_class:
    if changed.any():
      read[0] = True
      return [(0, int(np.where(changed, cost, np.inf).argmin()))], True
    t = int(sure.argmin())
    if sure[t] < doubt[0]:
      doubt[0] = sure[t]
      return [(0, t)], False
    return [], False
  taken = []
  for t in range(len(changed)):
    if read[t]:
      continue
    if changed[t]:
      read[t] = True
      taken.append((t, t))
    elif sure[t] < doubt[t]:
      doubt[t] = sure[t]
      taken.append((t, t))
  return taken, bool(read[:len(changed)].all())


def _edit_candidates(complete, recognizers, edits: LabelledEdits, attribute: str, faces, masks,
                     w_plus, base_done, idx, labels, strength: float, *, margin: float = 0.0,
                     local=None, variants: int = 0):
  """The edits of images ``idx`` towards each *other* class of ``attribute`` at ``strength``
  (the image's own class would not move it: not computed): (i_style, completions) (T - 1, n,
  ...), in the order of the classes, whether every recognizer of ``recognizers`` reads another
  class than its ``labels`` (R, n) with probability at least ``margin`` (T - 1, n), the mean
  hole change from ``base_done`` (T - 1, n), the recognizers' mean confidence that the class
  is still their label (T - 1, n; a recognizer that reads another class adds 0) and the target
  classes (T - 1, n).

  ``local``: ``(weight, base_style)`` handed to ``complete`` (a local edit, see
  :func:`make_complete_fn`), ``base_style`` (N, ...) indexed like the faces. ``variants``: the
  candidates are padded to this many (repeats of the last, dropped from the outputs).

  Candidate t of every image is one generator variant; RN-B's batch statistics pool each
  variant's images, so a completion depends (at the 1e-3 level, 0-1 scale) on which edits share
  its variant."""
  classes = sorted(edits.means[attribute])
  means = np.stack([edits.means[attribute][t] for t in classes])         # (T, L, D)
  own = np.searchsorted(classes, edits.nearest(attribute, w_plus[idx]))  # (n,)
  others = np.stack([np.delete(np.arange(len(classes)), o) for o in own], axis=1)   # (T-1, n)
  extra = max(variants - len(others), 0)
  padded = np.concatenate([others, np.repeat(others[-1:], extra, axis=0)])
  latents = w_plus[idx][None] + strength * (means[padded] - means[own][None])
  blend = (local[0], local[1][idx]) if local is not None else ()
  i_style, done = jax.device_get(complete(faces[idx], masks[idx], latents, *blend))
  t = len(others)
  changed, sure = np.ones(others.shape, bool), np.zeros(others.shape)
  for (module, variables), label in zip(recognizers, labels):
    pred = toy.predict_attributes(module, variables, done)    # padded too: one shape
    column = pred.names.index(attribute)
    same = pred.labels[:t, :, column] == label[None]
    confidence = pred.confidence[:t, :, column]
    changed &= ~same & (confidence >= margin)
    sure += np.where(same, confidence, 0.0) / len(recognizers)
  i_style, done = i_style[:t], done[:t]
  hole = 1.0 - masks[idx, ..., 0]
  cost = ((np.abs(done - base_done[idx][None]).mean(axis=-1) * hole[None]).sum(axis=(2, 3))
          / np.maximum(hole.sum(axis=(1, 2)), 1.0)[None])
  return i_style, done, changed, cost, sure, np.asarray(classes)[others]


def make_complete_fn(models: pipeline.Models, variables):
  """jitted (images, masks, latents (K, N, L, D)[, weight (H, W), base_style (N, H, W, 3)]) ->
  (i_style, completions), each (K, N, ...). With ``weight``, each style image keeps
  ``base_style`` where the weight is 0 and its own change where it is 1 (a local edit).
  ``variables`` are an argument of the compiled function, not constants folded into it."""

  @jax.jit
  def run(variables, images, masks, latents, weight, base_style):
    i_masked = pipeline.masked_image(images, masks)
    if weight is None:
      out = pipeline.complete_with_codes(models, variables, i_masked, masks, latents)
      return out["i_style"], out["completions"]
    i_style = pipeline.style_images(models.psp, variables["psp"], latents, models.image_size,
                                    models.psp_decode_size)
    i_style = base_style[None] + weight[:, :, None] * (i_style - base_style[None])
    out = pipeline.complete_with_styles(models, variables, i_masked, masks, i_style)
    return out["i_style"], out["completions"]

  def complete(images, masks, latents, weight=None, base_style=None):
    return run(variables, images, masks, latents, weight, base_style)

  return complete
