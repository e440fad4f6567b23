"""Held-out inpainting quality on the toy domain: DiFAI, its coarse net and OpenCV Telea.

    python -m benchmarks.toy_inpainting [--checkpoint toy-difai] [--num 200] [--grid out.png]
    python -m benchmarks.toy_inpainting --coarse runs/toy_coarse   # another coarse net in it
    python -m benchmarks.toy_inpainting --psp runs/toy_psp_export  # another pSp (same decoder)
    python -m benchmarks.toy_inpainting --degree 3 --layers 4,5,6,7,8,9   # edits of some layers
    python -m benchmarks.toy_inpainting --refine_steps 50   # codes fitted to the known pixels
    python -m benchmarks.toy_inpainting --edits labelled   # attribute directions from labels
    python -m benchmarks.toy_inpainting --edits labelled --edit_search 0.5,1,2,3   # least edits
    python -m benchmarks.toy_inpainting --edits labelled --edit_search 0.5,1,2,3 --edit_pool 6 \
        --edit_margin 0.9 --edit_agree runs/recognizer_b   # least edits two recognizers read
    python -m benchmarks.toy_inpainting --edits labelled --edit_search 0.5,1,2,3 --edit_pool 6 \
        --edit_margin 0.9 --edit_classes   # two classes of one attribute may both be kept
    python -m benchmarks.toy_inpainting --edits labelled --edit_search 0.5,1,2,3,4,5,6,8,11,16 \
        --edit_pool 6 --edit_margin 0.9 --edit_classes --edit_local 0.5 --refine_steps 50 \
        --families training,squares   # local edits (the best trade-off measured, README)

Test-split toy faces (never trained on) with three mask families, each drawn from fixed seeds:
(a) ``training``: the training masks (configs/demo.py's MaskSampler: strokes, 85 px-at-256
squares, both); (b) ``squares``: 1-3 squares covering 15-30 %; (c) ``thick_strokes``: 3-5
strokes of a fixed width (the ``data.masks`` evaluation families of the same names).

Per family and method: the hole MAE (64 px, 0-255, mean over the hole pixels of an image, then
over images). Methods:
- ``flat``: the known pixels' mean colour in the hole (a floor any method must beat);
- ``telea``: ``cv2.inpaint(..., 5, cv2.INPAINT_TELEA)`` (Telea 2004; no learning);
- ``coarse``: the coarse net alone (I_coarse composited);
- ``difai_00``: completion 00 (the unperturbed W+, the Table 1 output);
- ``difai_edited``: the K - 1 SeFa-perturbed completions (mean over them);
- diagnostics: the generator with the ground truth as I_style (``style_gt``: its upper bound,
  what a perfect StyleGAN2 prior would give) and with I_coarse as I_style (``style_coarse``);
  the style image itself (``i_style_00``: pSp's inversion of I_coarse, decoded, unperturbed),
  the prior's guess for the hole.
Also, for the edited completions, how many of the K - 1 differ from completion 00 in an attribute
the toy judge recognises reliably (``edited_attribute_changes``, mean over images; with
``--edit_search`` also as the training recognizer reads them,
``edited_attribute_changes_training_recognizer``). A reference
row, ``other_faces``: the hole of K - 1 other test faces pasted into each face (the toy faces are
aligned), its error and how many of them differ from the truth in a reliable attribute
(``other_faces_attribute_changes``): what the diversity of real faces costs in hole error.

``--edits labelled`` (not the paper) replaces the SeFa edits by edits along attribute
directions of W+: the mean pSp codes of each class of an attribute over 3,000 train faces,
from their true labels; an edit moves a code from its class's mean to another class's (chosen
at random), and each image gets the K - 1 attributes whose change falls most inside its hole.
Skin tone is left out (it recolours the whole hole). ``--edit_search 0.5,1,2,3`` makes each of
those edits as small as it can be: per image and attribute, the least of the listed strengths
(and, at it, the target class that changes the hole least) at which the *training* recognizer
(``toy-recognizer``; the judge that scores the result is never consulted) reads the completion
as another class (:func:`minimal_edits`). ``--edit_pool P`` searches P attributes per image
(those that weigh most in its hole) and keeps the K - 1 edits that recognizer reads as
changes, the least hole change first. ``--edit_margin m`` counts a change only at probability
m of the new class (an image's edit with none that sure keeps the strength and class at which the
recognizer is least sure of the old class). ``--edit_agree runs/recognizer_b`` makes further
training-side recognizers (configs/toy_recognizer_b.py) read each change too.
``--edit_classes`` searches each target class of an attribute on its own (each to its least
strength), so that the kept edits may give one attribute two classes (red and black hair where
only hair lies in the hole). ``--edit_local 0.5`` changes each edit's style image only inside
its attribute's region; ``--edit_local 0.5,0`` tries each edit both locally and on the whole
image and keeps, per change, the one read with the least hole change.

With ``--edit_search``, each family also reports ``edit_changes_found_shares``: the share of
images for which the search found 0, 1, 2, ... K - 1 or more edits the training recognizer
reads as changes (at ``--edit_margin``; no choice among the searched edits can count more as
that recognizer reads them), beside ``edited_attribute_changes_shares``, the judge's count per
image in the same form.

Prints one JSON object (and a line per mask family on stderr as each ends); ``--grid`` writes
rows of masked input / Telea / coarse / I_style / completions / ground truth for the first faces
of each family.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from difai_jax.training import checkpoints
from difai_jax.data import image_io
from difai_jax import pipeline
from difai_jax import pretrained
from difai_jax import runtime
from difai_jax.data import masks as masks_lib
from difai_jax.data import toy_faces
from difai_jax.evaluation.metrics import toy
from difai_jax.models import psp as psp_lib

FAMILIES = ("training", "squares", "thick_strokes")
# the training masks of configs/demo.py / toy_difai.py (data/config.py's defaults)
TRAINING_MASK_PROBS = {"strokes": 0.4, "square": 0.2, "strokes_square": 0.4}


def family_masks(family: str, num: int, size: int = 64, seed: int = 0) -> np.ndarray:
  """(num, size, size, 1) float32 masks (1 = known) of one family, mask i from
  ``default_rng([seed, family_id, i])``."""
  if family not in FAMILIES:
    raise ValueError(f"unknown mask family {family!r}; expected one of {FAMILIES}")
  fid = FAMILIES.index(family)
  out = []
  for i in range(num):
    rng = np.random.default_rng([seed, 100 + fid, i])
    if family == "training":
      out.append(masks_lib.MaskSampler(size, TRAINING_MASK_PROBS)(rng))
    else:
      out.append(masks_lib.bucket_mask(rng, size, family))
  return np.stack(out)


def hole_mae(images: np.ndarray, truth: np.ndarray, masks: np.ndarray) -> np.ndarray:
  """Per-image mean absolute error over hole pixels and channels, 0-255 scale.

  images, truth: (N, H, W, 3) in [-1, 1]; masks (N, H, W, 1), 1 = known."""
  err = np.abs(np.asarray(images, np.float64) - np.asarray(truth, np.float64)) * 127.5
  hole = 1.0 - np.asarray(masks, np.float64)
  return (err * hole).sum(axis=(1, 2, 3)) / np.maximum(3 * hole.sum(axis=(1, 2, 3)), 1)


def telea(images: np.ndarray, masks: np.ndarray, radius: int = 5) -> np.ndarray:
  """OpenCV's Telea inpainting of (N, H, W, 3) [-1, 1] images, on uint8 as OpenCV takes them."""
  import cv2  # pylint: disable=import-outside-toplevel  (bench / test extra only)
  out = []
  for image, mask in zip(image_io.to_uint8(images), masks):
    hole = (mask[..., 0] < 0.5).astype(np.uint8) * 255
    out.append(cv2.inpaint(np.ascontiguousarray(image), hole, radius, cv2.INPAINT_TELEA))
  return image_io.uint8_to_float(np.stack(out))


def flat_fill(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
  """The known pixels' mean colour in the hole."""
  known = masks.sum(axis=(1, 2), keepdims=True)
  mean = (images * masks).sum(axis=(1, 2), keepdims=True) / np.maximum(known, 1)
  return images * masks + mean * (1 - masks)


def make_difai_fn(inference: checkpoints.Inference, num_completions: int, degree: float,
                  layers: tuple[int, ...] | None = None,
                  refine: tuple[int, float] = (0, runtime.REFINE_LR)):
  """jitted (images, masks) -> dict of the pipeline's outputs plus the two diagnostic rows.

  ``layers``: the W+ layers the SeFa edits move (default: the run's ``sefa.layers``, all when
  unset). ``refine``: (steps, lr) of ``pipeline.fit_codes_to_known`` (0 steps: none)."""
  models, variables = inference.models, inference.variables
  components = jnp.arange(num_completions - 1, dtype=jnp.int32)
  degrees = degree * jnp.where(components % 2 == 0, 1.0, -1.0)
  if layers is None and inference.config.sefa.get("layers"):
    layers = tuple(inference.config.sefa.layers)

  @jax.jit
  def run(images, masks):
    n = images.shape[0]
    out = pipeline.inpaint(models, variables, images, masks,
                           jnp.broadcast_to(components, (n, num_completions - 1)),
                           jnp.broadcast_to(degrees, (n, num_completions - 1)), layers,
                           refine_steps=refine[0], refine_lr=refine[1])
    i_masked = out["i_masked"]
    for name, style in (("style_gt", images), ("style_coarse", out["i_coarse"])):
      prime = pipeline.style_prime(i_masked, masks, style[None])
      i_out = pipeline.generate(models.generator, variables["generator"], i_masked, prime, masks)
      out[name] = pipeline.composite(i_masked, i_out[0], masks)
    out["coarse"] = pipeline.composite(i_masked, out["i_coarse"], masks)
    return {k: out[k] for k in ("coarse", "i_style", "completions", "style_gt", "style_coarse",
                                "w_plus")}

  return run


def run_difai(fn, images: np.ndarray, masks: np.ndarray, batch: int = 50) -> dict:
  outs = []
  for s in range(0, len(images), batch):
    x, m = images[s:s + batch], masks[s:s + batch]
    pad = batch - len(x)
    if pad:
      x = np.concatenate([x, np.repeat(x[:1], pad, 0)])
      m = np.concatenate([m, np.repeat(m[:1], pad, 0)])
    o = jax.device_get(fn(x, m))
    o = {k: (v[:, :batch - pad] if v.ndim == 5 else v[:batch - pad]) for k, v in o.items()}
    outs.append(o)
  return {k: np.concatenate([o[k] for o in outs], axis=1 if outs[0][k].ndim == 5 else 0)
          for k in outs[0]}


def attribute_changes(judge, judge_vars, completions: np.ndarray) -> np.ndarray:
  """Per image: how many of completions[1:] differ from completions[0] in a reliable attribute.

  completions: (K, N, H, W, 3)."""
  pred = toy.predict_attributes(judge, judge_vars, completions)
  keep = [pred.names.index(a) for a in toy.reliable_attributes()]
  labels = pred.labels[..., keep]
  return np.any(labels[1:] != labels[:1], axis=-1).sum(axis=0)


def other_faces(faces: np.ndarray, masks: np.ndarray, donors: np.ndarray, count: int,
                seed: int = 0) -> np.ndarray:
  """(1 + count, N, H, W, 3): the faces, then ``count`` copies whose hole holds the pixels of
  other faces (``donors``, each copy a seeded permutation of them)."""
  rng = np.random.default_rng(seed)
  pasted = [faces * masks + donors[rng.permutation(len(donors))[:len(faces)]] * (1 - masks)
            for _ in range(count)]
  return np.stack([faces] + pasted)


# What the labelled edits may change: the reliably recognised attributes but skin tone.
EDIT_ATTRIBUTES = ("hair_style", "hair_colour", "beard", "moustache", "glasses", "lipstick")


@dataclasses.dataclass
class LabelledEdits:
  """Edits along attribute directions of W+ found from labels (not the paper's SeFa).

  ``means[attribute][class]``: the (L, D) mean pSp code of the train faces of that class;
  ``regions[attribute]``: (H, W) where moving codes between its classes changes the style
  image, normalised to sum 1.
  """
  means: dict
  regions: dict
  strength: float = 1.0

  @classmethod
  def fit(cls, inference: checkpoints.Inference, attributes=EDIT_ATTRIBUTES,
          num_faces: int = 3000, min_count: int = 30, seed: int = 0,
          strength: float = 1.0) -> "LabelledEdits":
    """Class means from the pSp codes of train faces 0 .. num_faces - 1 (true labels; classes
    with fewer than ``min_count`` faces left out), regions from 200 of those codes edited."""
    models, variables = inference.models, inference.variables
    size = int(inference.config.image_size)
    encode = jax.jit(lambda x: pipeline.invert(models.psp, variables["psp"], x))
    decode = jax.jit(lambda w: pipeline.style_images(models.psp, variables["psp"], w[None],
                                                     size)[0])
    faces, labels = toy.toy_test_faces(num_faces, size, start=0)
    codes = np.concatenate([np.asarray(encode(faces[s:s + 250]))
                            for s in range(0, num_faces, 250)])
    means = {}
    for attribute in attributes:
      column = labels[:, toy_faces.ATTRIBUTE_NAMES.index(attribute)]
      classes = [c for c in np.unique(column) if np.sum(column == c) >= min_count]
      if len(classes) < 2:
        raise ValueError(f"{attribute}: fewer than two classes with {min_count} faces among "
                         f"the first {num_faces}")
      means[attribute] = {int(c): codes[column == c].mean(axis=0) for c in classes}
    edits = cls(means, {}, strength)
    sample = codes[:200]
    decoded = lambda w: np.concatenate([np.asarray(decode(w[s:s + 50]))
                                        for s in range(0, len(w), 50)])
    base = decoded(sample)
    rng = np.random.default_rng(seed)
    for attribute in attributes:
      change = np.abs(decoded(edits.move(attribute, sample, rng)) - base).mean(axis=(0, 3))
      edits.regions[attribute] = change / change.sum()
    return edits

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


def minimal_edits(complete, edits: LabelledEdits, recognizer, faces, masks, w_plus,
                  base: np.ndarray, count: int, strengths: tuple[float, ...],
                  chunk: int = 50, pool: int | None = None, margin: float = 0.0,
                  agree: tuple = (), per_class: bool = False,
                  local: float | tuple[float, ...] = 0.0
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(i_style, completions) (1 + count, N, ...) and (N,) how many of the searched edits the
  recognizer read as changed (the most any choice among them can count): per image, the
  ``count`` attributes of :meth:`LabelledEdits.latents`, each edited as little as the
  *training* recognizer (``recognizer``, never the judge) needs to read the completion as
  changed in it. With ``pool`` > ``count``, the ``pool`` attributes that weigh most in the hole
  are searched and the ``count`` kept are those the recognizer reads as changed, the least hole
  change first (then the rest, the least change first). ``margin``: a change counts only where
  the recognizer gives the new class at least this probability (a surer change, a larger edit).
  ``agree``: further training-side recognizers ((module, variables) pairs, never the judge) that
  must each read a change too (each against its own reading of completion 00, at ``margin``),
  so that an edit that flips one network's reading with a few pixels is not taken for a change.

  ``strengths`` are tried in increasing order, each towards every other class of the
  attribute; an image's edit stops at the first strength the recognizer reads as another class
  of that attribute, keeping the target class whose completion moves least from completion 00
  (``base`` (2, N, ...): its i_style and completion) in the hole. When no strength does, the
  edit the recognizer is least sure keeps the image's class is kept (with ``agree``, the mean of
  the recognizers' confidence in their first reading, 0 where one reads another class).

  ``per_class``: each target class of a searched attribute is a candidate of its own (searched
  to its own least strength), so that two kept edits may change one attribute to two different
  classes (black and red hair where only hair shows in the hole); the ``count`` kept are chosen
  among all of them as above. ``local`` > 0: each edit changes the style image only inside its
  attribute's region (:meth:`LabelledEdits.weight` at this level; 0.5: full change where the
  region is at least half its peak), keeping completion 00's style image elsewhere. Several
  levels (e.g. ``(0.5, 0.0)``; 0: the whole image) make each edit a candidate at each of them,
  so that a whole-image edit is kept only where no local one is read."""
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
                                     faces, masks, w_plus, base[1], margin=margin, local=blend)
      found.search(candidates, jobs, jobs[:, 1] * width + v * classes, classes, labels,
                   strengths, chunk, per_class)
  if len(levels) > 1:
    found = found.best_level(len(levels), classes)
  return (*_keep_cheapest(found.styles, found.completions, found.read, found.spent, count),
          found.read.sum(axis=0))


@dataclasses.dataclass
class _Found:
  """What :func:`minimal_edits` keeps per slot (E) and image (N) as it searches."""
  styles: np.ndarray          # (1 + E, N, H, W, 3): [0] completion 00's, then each slot's
  completions: np.ndarray     # (1 + E, N, H, W, 3)
  read: np.ndarray            # (E, N): read as changed
  spent: np.ndarray           # (E, N): its mean hole change from completion 00
  doubt: np.ndarray           # (E, N): an unread one's confidence in the old class

  @classmethod
  def start(cls, base: np.ndarray, slots: int) -> "_Found":
    """Every slot holds completion 00 (``base``: its i_style and completion), none read."""
    n = base.shape[1]
    return cls(np.repeat(base[:1], 1 + slots, axis=0), np.repeat(base[1:], 1 + slots, axis=0),
               np.zeros((slots, n), bool), np.full((slots, n), np.inf),
               np.full((slots, n), np.inf))

  def search(self, candidates, jobs, first, classes: int, labels, strengths, chunk: int,
             per_class: bool):
    """Searches the edits ``jobs`` ((J, 2): image, edit) over ``strengths``, each into its
    ``classes`` slots from ``first`` (J,), until :func:`_take` finishes it.
    ``candidates(idx, labels, strength)``: :func:`_edit_candidates` of images ``idx``."""
    pending = np.arange(len(jobs))
    for strength in sorted(strengths):
      still = []
      for s in range(0, len(pending), chunk):
        part = pending[s:s + chunk]
        idx = np.concatenate([jobs[part, 0], np.repeat(jobs[part[:1], 0], chunk - len(part))])
        i_style, done, changed, cost, sure = candidates(idx, labels[:, idx], strength)
        for n, job in enumerate(part):
          i, slots = jobs[job, 0], slice(first[job], first[job] + classes)
          taken, finished = _take(changed[:, n], cost[:, n], sure[:, n], self.read[slots, i],
                                  self.doubt[slots, i], per_class)
          for slot, t in taken:
            self.styles[1 + first[job] + slot, i] = i_style[t, n]
            self.completions[1 + first[job] + slot, i] = done[t, n]
            self.spent[first[job] + slot, i] = cost[t, n]
          if not finished:
            still.append(job)
      pending = np.asarray(still, dtype=int)

  def best_level(self, levels: int, classes: int) -> "_Found":
    """One candidate per (edit, class) out of its ``levels`` local levels (slot = (edit k,
    level v, class c) in that order): the one read as changed, the least hole change first,
    so that one change is never kept twice at two levels."""
    n = self.read.shape[1]
    shape = (-1, levels, classes, n)
    best = np.lexsort((self.spent.reshape(shape), ~self.read.reshape(shape)), axis=1)[:, 0]
    k, c, _ = np.indices(best.shape)
    pick = (k * levels * classes + best * classes + c).reshape(-1, n)      # (E', N) slots
    images = np.arange(n)[None]
    return _Found(np.concatenate([self.styles[:1], self.styles[1:][pick, images]]),
                  np.concatenate([self.completions[:1], self.completions[1:][pick, images]]),
                  self.read[pick, images], self.spent[pick, images], self.doubt[pick, images])


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


def _keep_cheapest(styles, completions, read, spent, keep: int):
  """Per image, the ``keep`` edits (of ``styles`` / ``completions`` [1:]) the recognizer read as
  changed (``read`` (E, N)), the least hole change (``spent``) first, then the others."""
  if keep == len(read):
    return styles, completions
  rank = np.lexsort((spent, ~read), axis=0)[:keep]                       # (keep, N)
  images = np.arange(read.shape[1])[None]
  return (np.concatenate([styles[:1], styles[1:][rank, images]]),
          np.concatenate([completions[:1], completions[1:][rank, images]]))


def _edit_candidates(complete, recognizers, edits: LabelledEdits, attribute: str, faces, masks,
                     w_plus, base_done, idx, labels, strength: float, *, margin: float = 0.0,
                     local=None):
  """The edits of images ``idx`` towards each *other* class of ``attribute`` at ``strength``
  (the image's own class would not move it: not computed): (i_style, completions) (T - 1, n,
  ...), in the order of the classes, whether every recognizer of ``recognizers`` reads another
  class than its ``labels`` (R, n) with probability at least ``margin`` (T - 1, n), the mean
  hole change from ``base_done`` (T - 1, n) and the recognizers' mean confidence that the class
  is still their label (T - 1, n; a recognizer that reads another class adds 0).

  ``local``: ``(weight, base_style)`` handed to ``complete`` (a local edit, see
  :func:`make_complete_fn`), ``base_style`` (N, ...) indexed like the faces.

  Candidate t of every image is one generator variant; RN-B's batch statistics pool each
  variant's images, so a completion depends (at the 1e-3 level, 0-1 scale) on which edits share
  its variant: the search's numbers moved a little when the own class was dropped (stop 42)."""
  classes = sorted(edits.means[attribute])
  means = np.stack([edits.means[attribute][t] for t in classes])         # (T, L, D)
  own = np.searchsorted(classes, edits.nearest(attribute, w_plus[idx]))  # (n,)
  others = np.stack([np.delete(np.arange(len(classes)), o) for o in own], axis=1)   # (T-1, n)
  latents = w_plus[idx][None] + strength * (means[others] - means[own][None])
  blend = (local[0], local[1][idx]) if local is not None else ()
  i_style, done = jax.device_get(complete(faces[idx], masks[idx], latents, *blend))
  changed, sure = np.ones(others.shape, bool), np.zeros(others.shape)
  for (module, variables), label in zip(recognizers, labels):
    pred = toy.predict_attributes(module, variables, done)
    column = pred.names.index(attribute)
    same = pred.labels[..., column] == label[None]
    changed &= ~same & (pred.confidence[..., column] >= margin)
    sure += np.where(same, pred.confidence[..., column], 0.0) / len(recognizers)
  hole = 1.0 - masks[idx, ..., 0]
  cost = ((np.abs(done - base_done[idx][None]).mean(axis=-1) * hole[None]).sum(axis=(2, 3))
          / np.maximum(hole.sum(axis=(1, 2)), 1.0)[None])
  return i_style, done, changed, cost, sure


def make_complete_fn(inference: checkpoints.Inference):
  """jitted (images, masks, latents (K, N, L, D)[, weight (H, W), base_style (N, H, W, 3)]) ->
  (i_style, completions), each (K, N, ...). With ``weight``, each style image keeps
  ``base_style`` where the weight is 0 and its own change where it is 1 (a local edit)."""
  models, variables = inference.models, inference.variables

  @jax.jit
  def complete(images, masks, latents, weight=None, base_style=None):
    i_masked = pipeline.masked_image(images, masks)
    if weight is None:
      out = pipeline.complete_with_codes(models, variables, i_masked, masks, latents)
      return out["i_style"], out["completions"]
    i_style = pipeline.style_images(models.psp, variables["psp"], latents, models.image_size,
                                    models.psp_decode_size)
    i_style = base_style[None] + weight[:, :, None] * (i_style - base_style[None])
    out = pipeline.complete_with_styles(models, variables, i_masked, masks, i_style)
    return out["i_style"], out["completions"]

  return complete


def relabel_edits(complete, edits: LabelledEdits, faces, masks, w_plus, count: int,
                  seed: int = 0, batch: int = 50) -> tuple[np.ndarray, np.ndarray]:
  """(i_style, completions) (1 + count, N, ...) with the labelled edits in place of SeFa's."""
  rng = np.random.default_rng(seed)
  styles, completions = [], []
  for s in range(0, len(faces), batch):
    latents = edits.latents(w_plus[s:s + batch], masks[s:s + batch], count, rng)
    i_style, done = jax.device_get(complete(faces[s:s + batch], masks[s:s + batch], latents))
    styles.append(i_style)
    completions.append(done)
  return np.concatenate(styles, axis=1), np.concatenate(completions, axis=1)


def with_coarse(inference: checkpoints.Inference, workdir: str) -> checkpoints.Inference:
  """``inference`` with the coarse net of a coarse-stage run (its latest checkpoint) in place of
  its own: the coarse row then scores that net, and DiFAI's rows its style images."""
  coarse, coarse_variables, _ = checkpoints.load_coarse_net(
      checkpoints.find_stage_dir(workdir, "coarse"))
  models = dataclasses.replace(inference.models, coarse=coarse)
  variables = {**inference.variables, "coarse": coarse_variables}
  return dataclasses.replace(inference, models=models, variables=variables)


def evaluate(checkpoint: str = "toy-difai", num: int = 200, num_completions: int = 4,
             degree: float = 5.0, grid: str | None = None, grid_rows: int = 4,
             coarse: str | None = None, psp: str | None = None,
             layers: tuple[int, ...] | None = None, edits: str = "sefa",
             edit_attributes: tuple[str, ...] = EDIT_ATTRIBUTES, edit_strength: float = 1.0,
             edit_search: tuple[float, ...] | None = None, edit_pool: int | None = None,
             edit_margin: float = 0.0, edit_agree: tuple[str, ...] = (),
             edit_classes: bool = False, edit_local: float | tuple[float, ...] = 0.0,
             refine_steps: int = 0,
             refine_lr: float = runtime.REFINE_LR,
             families: tuple[str, ...] = FAMILIES) -> dict:
  if edits not in ("sefa", "labelled"):
    raise ValueError(f"edits must be 'sefa' or 'labelled', got {edits!r}")
  if not families or set(families) - set(FAMILIES):
    raise ValueError(f"families must be some of {FAMILIES}, got {families!r}")
  if (edit_agree or edit_classes or edit_local) and not edit_search:
    raise ValueError("edit_agree, edit_classes and edit_local need edit_search (the search they "
                     "change)")
  inference = checkpoints.load_difai(checkpoint)
  if coarse:
    inference = with_coarse(inference, coarse)
  if psp:
    inference = with_psp(inference, psp)
  size = int(inference.config.image_size)
  fn = make_difai_fn(inference, num_completions, degree, layers, (refine_steps, refine_lr))
  judge, judge_vars = toy.load_toy_recognizer()
  faces, _ = toy.toy_test_faces(num, size)
  donors, _ = toy.toy_test_faces(num, size, start=toy.TEST_START + num)
  labelled = (LabelledEdits.fit(inference, edit_attributes, strength=edit_strength)
              if edits == "labelled" else None)
  complete = make_complete_fn(inference) if labelled else None
  recognizer = toy.load_toy_recognizer("toy-recognizer") if edit_search else None
  agree = tuple(load_edit_recognizer(spec) for spec in edit_agree)
  result, rows = {"checkpoint": checkpoint, "coarse": coarse or checkpoint,
                  "psp": psp or inference.config.pretrained.psp,
                  "step": inference.step, "num_faces": num,
                  "num_completions": num_completions, "edits": edits,
                  "degree": degree if edits == "sefa" else None,
                  **({"edit_attributes": list(edit_attributes), "edit_strength": edit_strength}
                     if labelled and not edit_search else {}),
                  **({"edit_attributes": list(edit_attributes), "edit_search": list(edit_search),
                      "edit_pool": edit_pool or num_completions - 1, "edit_margin": edit_margin,
                      "edit_agree": list(edit_agree), "edit_classes": edit_classes,
                      "edit_local": (list(edit_local) if isinstance(edit_local, tuple)
                                     else edit_local)}
                     if edit_search else {}),
                  "sefa_layers": list(layers) if layers else "the run's",
                  "refine_steps": refine_steps,
                  **({"refine_lr": refine_lr} if refine_steps else {})}, []
  for family in families:
    start = time.time()
    m = family_masks(family, num, size)
    out = run_difai(fn, faces, m)
    if edit_search:
      base = np.stack([out["i_style"][0], out["completions"][0]])
      out["i_style"], out["completions"], found = minimal_edits(
          complete, labelled, recognizer, faces, m, out["w_plus"], base, num_completions - 1,
          edit_search, pool=edit_pool, margin=edit_margin, agree=agree, per_class=edit_classes,
          local=edit_local)
    elif labelled:
      out["i_style"], out["completions"] = relabel_edits(complete, labelled, faces, m,
                                                         out["w_plus"], num_completions - 1)
    methods = {"flat": flat_fill(faces, m), "telea": telea(faces, m), "coarse": out["coarse"],
               "difai_00": out["completions"][0], "style_gt": out["style_gt"],
               "style_coarse": out["style_coarse"], "i_style_00": out["i_style"][0]}
    row = {name: float(hole_mae(x, faces, m).mean()) for name, x in methods.items()}
    row["difai_edited"] = float(np.mean([hole_mae(c, faces, m).mean()
                                         for c in out["completions"][1:]]))
    changes = attribute_changes(judge, judge_vars, out["completions"])
    row["edited_attribute_changes"] = float(changes.mean())
    row["edited_attribute_changes_shares"] = shares(changes, num_completions - 1)
    if edit_search:     # what the search's own recognizer reads (the judge's count above)
      row["edited_attribute_changes_training_recognizer"] = float(
          attribute_changes(*recognizer, out["completions"]).mean())
      # how many changes the search found per image: the most any choice among them counts
      row["edit_changes_found_shares"] = shares(found, num_completions - 1)
    pasted = other_faces(faces, m, donors, num_completions - 1)
    row["other_faces"] = float(np.mean([hole_mae(p, faces, m).mean() for p in pasted[1:]]))
    row["other_faces_attribute_changes"] = float(
        attribute_changes(judge, judge_vars, pasted).mean())
    row["hole_ratio"] = float(masks_lib.hole_ratio(m).mean())
    for name in ("coarse", "difai_00", "difai_edited", "other_faces"):
      row[f"{name}_over_telea"] = row[name] / row["telea"]
    result[family] = row
    print(f"{family}: completion 00 {row['difai_00']:.2f}, edited {row['difai_edited']:.2f} with "
          f"{row['edited_attribute_changes']:.2f} changes, Telea {row['telea']:.2f} "
          f"({time.time() - start:.0f} s)", file=sys.stderr, flush=True)
    if grid:
      n = grid_rows
      masked = np.where(m[:n] > 0.5, faces[:n], -1.0)      # the hole in black
      cols = [masked, methods["telea"][:n], out["coarse"][:n], out["i_style"][0, :n],
              *out["completions"][:, :n], out["style_gt"][:n], faces[:n]]
      rows.append(np.concatenate([np.concatenate(list(c), 0) for c in cols], 1))
  if grid:
    image_io.save_png(grid, np.concatenate(rows, 0))
  return result


def shares(counts: np.ndarray, top: int) -> list[float]:
  """The share of images with 0, 1, ..., ``top`` or more of ``counts`` (N,)."""
  return [float(v) for v in np.bincount(np.minimum(counts, top), minlength=top + 1)
          / len(counts)]


def load_edit_recognizer(spec: str):
  """``(module, variables)`` of a training-side recognizer for ``--edit_agree``; the judge
  (by weights: a copy of it too) is refused, since it scores what the search picks."""
  module, variables = toy.load_toy_recognizer(spec)
  pretrained.refuse_the_judge("--edit_agree", spec, variables,
                              why="it scores the edits the search picks")
  return module, variables


def with_psp(inference: checkpoints.Inference, directory: str) -> checkpoints.Inference:
  """``inference`` with another exported pSp (directory or short name) in place of its own.

  The pSp must decode with the same StyleGAN2 (checked): the SeFa directions, computed from
  that decoder's weights, then still apply."""
  module, variables = pretrained.load(directory)
  if (psp_lib.decoder_fingerprint(variables)
      != psp_lib.decoder_fingerprint(inference.variables["psp"])):
    raise ValueError(f"{directory}: its StyleGAN2 decoder differs from the one "
                     f"{inference.config.pretrained.psp} decodes with; SeFa would not apply")
  models = dataclasses.replace(inference.models, psp=module)
  return dataclasses.replace(inference, models=models,
                             variables={**inference.variables, "psp": variables})


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--checkpoint", default="toy-difai")
  parser.add_argument("--num", type=int, default=200)
  parser.add_argument("--num_completions", type=int, default=4)
  parser.add_argument("--degree", type=float, default=5.0)
  parser.add_argument("--grid", default=None, help="write a picture of the first faces here")
  parser.add_argument("--coarse", default=None,
                      help="a coarse-stage workdir whose net replaces the checkpoint's")
  parser.add_argument("--psp", default=None,
                      help="an exported pSp (same StyleGAN2 decoder) that replaces the "
                           "checkpoint's")
  parser.add_argument("--layers", default=None,
                      help="comma-separated W+ layers the SeFa edits move (e.g. 4,5,6,7,8,9); "
                           "default: the run's sefa.layers")
  parser.add_argument("--edits", choices=("sefa", "labelled"), default="sefa",
                      help="the perturbed completions' edits: SeFa (the paper; --degree, "
                           "--layers) or labelled attribute directions (see above)")
  parser.add_argument("--edit_attributes", default=",".join(EDIT_ATTRIBUTES),
                      help="--edits labelled: the attributes it may change (comma-separated)")
  parser.add_argument("--edit_strength", type=float, default=1.0,
                      help="--edits labelled: multiple of the step between class means")
  parser.add_argument("--edit_search", default=None,
                      help="--edits labelled: comma-separated strengths (e.g. 0.5,1,2,3); per "
                           "image and attribute the least change of completion 00 that the "
                           "training recognizer (toy-recognizer, not the judge) reads as another "
                           "class (see minimal_edits); replaces --edit_strength")
  parser.add_argument("--edit_pool", type=int, default=None,
                      help="--edit_search: search this many attributes per image (those that "
                           "weigh most in its hole) and keep the K - 1 edits the training "
                           "recognizer reads as changes, the least hole change first; default "
                           "K - 1 (no choice)")
  parser.add_argument("--edit_margin", type=float, default=0.0,
                      help="--edit_search: count a change only where the training recognizer "
                           "gives the new class at least this probability (default 0: any "
                           "change of its reading)")
  parser.add_argument("--edit_agree", default="",
                      help="--edit_search: further training-side recognizers (comma-separated "
                           "directories, e.g. runs/recognizer_b from configs/toy_recognizer_b.py; "
                           "never the judge) that must read each change too")
  parser.add_argument("--edit_classes", action="store_true",
                      help="--edit_search: each target class of an attribute is a candidate of "
                           "its own, so two kept edits may change one attribute to two classes "
                           "(see minimal_edits' per_class)")
  parser.add_argument("--edit_local", default="0",
                      help="--edit_search: > 0 changes each style image only inside its "
                           "attribute's region, fully where the region is at least this fraction "
                           "of its peak (e.g. 0.5; see LabelledEdits.weight); 0: the whole image; "
                           "comma-separated levels (e.g. 0.5,0): each edit tried at each, the "
                           "one read with the least hole change kept")
  parser.add_argument("--refine_steps", type=int, default=0,
                      help="not the paper: Adam steps fitting pSp's W+ codes to the known "
                           "pixels before the edits (pipeline.fit_codes_to_known); the labelled "
                           "edits then start from the fitted codes")
  parser.add_argument("--refine_lr", type=float, default=runtime.REFINE_LR)
  parser.add_argument("--families", default=",".join(FAMILIES),
                      help=f"comma-separated mask families to measure (default all: "
                           f"{','.join(FAMILIES)})")
  args = parser.parse_args()
  problem = runtime.refine_problem(args.refine_steps, args.refine_lr)
  if problem:
    parser.error(problem)
  families = tuple(f for f in args.families.split(",") if f)
  if not families or set(families) - set(FAMILIES):
    parser.error(f"--families: unknown {sorted(set(families) - set(FAMILIES))}; known: "
                 f"{list(FAMILIES)}")
  attributes = tuple(a for a in args.edit_attributes.split(",") if a)
  unknown = sorted(set(attributes) - set(toy_faces.ATTRIBUTE_NAMES))
  if unknown:
    parser.error(f"--edit_attributes: unknown {unknown}; known: "
                 f"{list(toy_faces.ATTRIBUTE_NAMES)}")
  layers = None
  if args.layers:
    try:
      layers = tuple(int(v) for v in args.layers.split(","))
    except ValueError:
      parser.error(f"--layers takes comma-separated integers, got {args.layers!r}")
  search = None
  if args.edit_search:
    if args.edits != "labelled":
      parser.error("--edit_search needs --edits labelled")
    try:
      search = tuple(float(v) for v in args.edit_search.split(","))
    except ValueError:
      parser.error(f"--edit_search takes comma-separated numbers, got {args.edit_search!r}")
    if not search or min(search) <= 0:
      parser.error(f"--edit_search strengths must be positive, got {args.edit_search!r}")
  if args.edit_margin and not search:
    parser.error("--edit_margin needs --edit_search")
  if not 0.0 <= args.edit_margin < 1.0:
    parser.error(f"--edit_margin is a probability below 1, got {args.edit_margin}")
  agree = tuple(a for a in args.edit_agree.split(",") if a)
  if agree and not search:
    parser.error("--edit_agree needs --edit_search")
  if args.edit_classes and not search:
    parser.error("--edit_classes needs --edit_search")
  try:
    local = tuple(float(v) for v in args.edit_local.split(","))
  except ValueError:
    parser.error(f"--edit_local takes comma-separated numbers, got {args.edit_local!r}")
  if any(local) and not search:
    parser.error("--edit_local needs --edit_search")
  if not all(0.0 <= v <= 1.0 for v in local) or len(set(local)) < len(local):
    parser.error(f"--edit_local levels are distinct fractions of the region's peak in [0, 1] "
                 f"(0: the whole image), got {args.edit_local!r}")
  local = local[0] if len(local) == 1 else local
  if args.edit_pool is not None:
    if not search:
      parser.error("--edit_pool needs --edit_search")
    if not args.num_completions - 1 <= args.edit_pool <= len(attributes):
      parser.error(f"--edit_pool must be between K - 1 = {args.num_completions - 1} and the "
                   f"{len(attributes)} --edit_attributes, got {args.edit_pool}")
  print(json.dumps(evaluate(args.checkpoint, args.num, args.num_completions, args.degree,
                            args.grid, coarse=args.coarse, psp=args.psp, layers=layers,
                            edits=args.edits, edit_attributes=attributes,
                            edit_strength=args.edit_strength, edit_search=search,
                            edit_pool=args.edit_pool, edit_margin=args.edit_margin,
                            edit_agree=agree, edit_classes=args.edit_classes,
                            edit_local=local,
                            refine_steps=args.refine_steps,
                            refine_lr=args.refine_lr, families=families),
                   indent=2))


if __name__ == "__main__":
  main()
