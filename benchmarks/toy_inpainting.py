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
as another class (:func:`difai_jax.labelled_edits.minimal_edits`, the library's search, which
``Inpainter(edits="labelled")`` runs too). ``--edit_pool P`` searches P attributes per image
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
import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from difai_jax.training import checkpoints
from difai_jax.data import image_io
from difai_jax import labelled_edits as labelled_lib
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


def shipped_or_fitted_edits(inference: checkpoints.Inference, checkpoint: str,
                            attributes: tuple[str, ...], strength: float):
  """The run's ``labelled_edits.npz`` (what ``Inpainter(edits="labelled")`` uses) when it holds
  these attributes, was fitted on this pSp and the strength is 1 (its regions are strength 1's);
  else a fit on 3,000 labelled train faces."""
  try:
    edits = labelled_lib.load_for_run(checkpoints.find_stage_dir(pretrained.resolve(checkpoint),
                                                                 "difai"),
                                      inference.variables["psp"])
  except (FileNotFoundError, ValueError):
    edits = None
  if edits is None or tuple(edits.regions) != tuple(attributes) or strength != 1.0:
    return labelled_lib.LabelledEdits.fit_toy(inference.models, inference.variables, attributes,
                                              strength=strength)
  return edits


def relabel_edits(complete, edits: labelled_lib.LabelledEdits, faces, masks, w_plus, count: int,
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
             edit_attributes: tuple[str, ...] = labelled_lib.TOY_ATTRIBUTES,
             edit_strength: float = 1.0,
             edit_search: tuple[float, ...] | None = None, edit_pool: int | None = None,
             edit_margin: float = 0.0, edit_agree: tuple[str, ...] = (),
             edit_recognizer: str = "toy-recognizer",
             edit_classes: bool = False, edit_local: float | tuple[float, ...] = 0.0,
             refine_steps: int = 0,
             refine_lr: float = runtime.REFINE_LR,
             families: tuple[str, ...] = FAMILIES, batch: int = 50) -> dict:
  if edits not in runtime.EDIT_SOURCES:
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
  labelled = (shipped_or_fitted_edits(inference, checkpoint, edit_attributes, edit_strength)
              if edits == "labelled" else None)
  complete = (labelled_lib.make_complete_fn(inference.models, inference.variables)
              if labelled else None)
  recognizer = (labelled_lib.load_recognizer(edit_recognizer, "--edit_recognizer")
                if edit_search else None)
  # training-side recognizers only: the judge (a copy of it too) scores what the search picks
  agree = tuple(labelled_lib.load_recognizer(spec, "--edit_agree") for spec in edit_agree)
  result, rows = {"checkpoint": checkpoint, "coarse": coarse or checkpoint,
                  "psp": psp or inference.config.pretrained.psp,
                  "step": inference.step, "num_faces": num,
                  "num_completions": num_completions, "edits": edits,
                  "degree": degree if edits == "sefa" else None,
                  **({"edit_attributes": list(edit_attributes), "edit_strength": edit_strength}
                     if labelled and not edit_search else {}),
                  **({"edit_attributes": list(edit_attributes), "edit_search": list(edit_search),
                      "edit_pool": edit_pool or num_completions - 1, "edit_margin": edit_margin,
                      "edit_agree": list(edit_agree), "edit_recognizer": edit_recognizer,
                      "edit_classes": edit_classes,
                      "edit_local": (list(edit_local) if isinstance(edit_local, tuple)
                                     else edit_local)}
                     if edit_search else {}),
                  "sefa_layers": list(layers) if layers else "the run's",
                  "refine_steps": refine_steps,
                  **({"refine_lr": refine_lr} if refine_steps else {}), "batch": batch}, []
  for family in families:
    start = time.time()
    m = family_masks(family, num, size)
    out = run_difai(fn, faces, m, batch)
    if edit_search:
      base = np.stack([out["i_style"][0], out["completions"][0]])
      searched = labelled_lib.minimal_edits(
          complete, labelled, recognizer, faces, m, out["w_plus"], base, num_completions - 1,
          edit_search, chunk=batch, pool=edit_pool, margin=edit_margin, agree=agree,
          per_class=edit_classes, local=edit_local)
      out["i_style"], out["completions"], found = searched[:3]
    elif labelled:
      out["i_style"], out["completions"] = relabel_edits(complete, labelled, faces, m,
                                                         out["w_plus"], num_completions - 1,
                                                         batch=batch)
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
  parser.add_argument("--edits", choices=runtime.EDIT_SOURCES, default="sefa",
                      help="the perturbed completions' edits: SeFa (the paper; --degree, "
                           "--layers) or labelled attribute directions (see above)")
  parser.add_argument("--edit_attributes", default=",".join(labelled_lib.TOY_ATTRIBUTES),
                      help="--edits labelled: the attributes it may change (comma-separated)")
  parser.add_argument("--edit_strength", type=float, default=1.0,
                      help="--edits labelled: multiple of the step between class means")
  parser.add_argument("--edit_search", default=None,
                      help="--edits labelled: comma-separated strengths (e.g. 0.5,1,2,3); per "
                           "image and attribute the least change of completion 00 that the "
                           "training recognizer (toy-recognizer, not the judge) reads as another "
                           "class (see labelled_edits.minimal_edits); replaces --edit_strength")
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
  parser.add_argument("--edit_recognizer", default="toy-recognizer",
                      help="--edit_search: the recognizer the search reads (never the judge), or "
                           "several read as one, comma-separated (their mean probabilities)")
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
  parser.add_argument("--batch", type=int, default=50,
                      help="faces per call of the networks (the RN-B generator's batch "
                           "statistics pool them); 1: each face alone, as Inpainter / inpaint "
                           "(one face per call) completes it")
  parser.add_argument("--families", default=",".join(FAMILIES),
                      help=f"comma-separated mask families to measure (default all: "
                           f"{','.join(FAMILIES)})")
  args = parser.parse_args()
  problem = runtime.refine_problem(args.refine_steps, args.refine_lr)
  if problem:
    parser.error(problem)
  if args.batch < 1:
    parser.error(f"--batch must be at least 1, got {args.batch}")
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
                            edit_agree=agree, edit_recognizer=args.edit_recognizer,
                            edit_classes=args.edit_classes,
                            edit_local=local,
                            refine_steps=args.refine_steps,
                            refine_lr=args.refine_lr, families=families,
                            batch=args.batch),
                   indent=2))


if __name__ == "__main__":
  main()
