"""How many reliably read attribute changes the labelled edits can make at all, per mask family.

    python -m benchmarks.edit_ceiling [--families thick_strokes,training] [--num 200]
        [--readers toy-recognizer,toy-judge] [--level 0.5] [--caps 16,20,25]

The issue's target for the perturbed completions (>= 2 of K - 1 = 3 differing from completion
00 in a reliably recognised attribute, within 1.3x Telea's hole error) is measured by
``benchmarks/toy_inpainting.py`` for one search. This asks what *any* choice among the labelled
edits could reach (a ceiling, not a method): on the held-out faces of a family (completion 00
with its codes fitted in 50 Adam steps, as the search's rows), every edit of
:mod:`difai_jax.labelled_edits` towards every other class of each of its six attributes at
every search strength (0.5 ... 16; the style image changed inside the attribute's region at
``--level``) is completed and read by every recognizer of ``--readers``. A change is *read*
where every reader names another class of the edited attribute than it names on completion 00
(their disagreement at a class boundary is what makes a change unreliable). Per face, the
cheapest read edit of each (attribute, class) is taken, and the K - 1 cheapest of those (by
hole error against the ground truth: an oracle's choice) make the ceiling; a face with fewer
is filled with completion 00 (its error). Reported per family: the ceiling's count (mean and
shares 0..K-1) and hole error against Telea's, also with only edits of hole error <= each of
``--caps`` (0-255), and the share of faces where each attribute has a read change at all.

The judge may be one of the readers here: this measures what exists, it chooses nothing that
a result is scored on. Every measure is on 64 px, 0-255. Prints one JSON object; ~17 min per
family of 200 faces on 2 CPU cores (~28,000 completions each).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import jax
import numpy as np

from benchmarks import toy_inpainting
from difai_jax import labelled_edits as labelled_lib
from difai_jax.evaluation.metrics import toy
from difai_jax.training import checkpoints

REFINE = (50, 0.03)


def ceiling(read: np.ndarray, error: np.ndarray, keys: np.ndarray, base_error: np.ndarray,
            count: int, cap: float = np.inf) -> dict:
  """The oracle's choice per face: of the candidates ``read`` (C, N) bool with hole ``error``
  (C, N) <= ``cap``, the cheapest of each key (C,) (an (attribute, class) id), then the
  ``count`` cheapest keys; missing ones cost ``base_error`` (N,). Returns ``count_mean``,
  ``count_shares`` (0..count) and ``error`` (mean over faces and the ``count`` slots)."""
  read = read & (error <= cap)
  counts, errors = [], []
  for n in range(read.shape[1]):
    best = {}
    for c in np.flatnonzero(read[:, n]):
      best[keys[c]] = min(best.get(keys[c], np.inf), float(error[c, n]))
    chosen = sorted(best.values())[:count]
    counts.append(len(chosen))
    errors.append(np.mean(chosen + [float(base_error[n])] * (count - len(chosen))))
  counts = np.asarray(counts)
  return {"count_mean": float(counts.mean()),
          "count_shares": [float(v) for v in np.bincount(counts, minlength=count + 1)
                           / len(counts)],
          "error": float(np.mean(errors))}


def candidates(complete, edits: labelled_lib.LabelledEdits, readers, faces, masks, w_plus,
               base: np.ndarray, level: float, batch: int = 50):
  """Every edit of every image towards every other class, read: ``(read (C, N), error (C, N),
  keys (C,), attributes (C,))``; a candidate towards an image's own class is never read."""
  hole = 1.0 - masks[..., 0]
  before = [toy.predict_attributes(*reader, base[1]) for reader in readers]
  read, error, keys, names = [], [], [], []
  for a, attribute in enumerate(edits.regions):
    classes = sorted(edits.means[attribute])
    means = np.stack([edits.means[attribute][t] for t in classes])            # (T, L, D)
    own = np.searchsorted(classes, edits.nearest(attribute, w_plus))            # (N,)
    # complete(...)'s local blend: this attribute's region weight and completion 00's style
    # images (the whole image is edited at level 0)
    weight = edits.weight(attribute, level) if level else None
    for strength in labelled_lib.STRENGTHS:
      got = np.ones((len(classes), len(faces)), bool)
      err = np.zeros((len(classes), len(faces)))
      for s in range(0, len(faces), batch):
        idx = np.arange(s, min(s + batch, len(faces)))
        latents = w_plus[idx][None] + strength * (means[:, None] - means[own[idx]][None])
        base_style = base[0][idx] if level else None
        _, done = jax.device_get(complete(faces[idx], masks[idx], latents, weight, base_style))
        for reader, was in zip(readers, before):
          pred = toy.predict_attributes(*reader, done)
          column = pred.names.index(attribute)
          got[:, idx] &= pred.labels[..., column] != was.labels[idx, column][None]
        err[:, idx] = [toy_inpainting.hole_mae(d, faces[idx], masks[idx]) for d in done]
      got[own, np.arange(len(faces))] = False
      read.append(got)
      error.append(err)
      keys += [a * 100 + t for t in range(len(classes))]
      names += [attribute] * len(classes)
    print(f"  {attribute}: {len(labelled_lib.STRENGTHS)} strengths x {len(classes)} classes "
          f"done", file=sys.stderr, flush=True)
  return np.concatenate(read), np.concatenate(error), np.asarray(keys), np.asarray(names)


def measure(family: str, num: int, readers: tuple[str, ...], level: float,
            caps: tuple[float, ...], count: int = 3) -> dict:
  inference = checkpoints.load_difai("toy-difai")
  fn = toy_inpainting.make_difai_fn(inference, count + 1, 5.0, None, REFINE)
  faces, _ = toy.toy_test_faces(num, 64)
  masks = toy_inpainting.family_masks(family, num, 64)
  out = toy_inpainting.run_difai(fn, faces, masks)
  base = np.stack([out["i_style"][0], out["completions"][0]])
  edits = toy_inpainting.shipped_or_fitted_edits(inference, "toy-difai",
                                                 labelled_lib.TOY_ATTRIBUTES, 1.0)
  complete = labelled_lib.make_complete_fn(inference.models, inference.variables)
  loaded = [toy.load_toy_recognizer(r) for r in readers]
  read, error, keys, names = candidates(complete, edits, loaded, faces, masks, out["w_plus"],
                                        base, level)
  base_error = toy_inpainting.hole_mae(base[1], faces, masks)
  telea = float(toy_inpainting.hole_mae(toy_inpainting.telea(faces, masks), faces, masks).mean())
  row = {"telea": telea, "completion_00": float(base_error.mean())}
  for cap in (np.inf,) + tuple(caps):
    c = ceiling(read, error, keys, base_error, count, cap)
    c["error_over_telea"] = c["error"] / telea
    row["ceiling" if cap == np.inf else f"ceiling_error_at_most_{cap:g}"] = c
  row["faces_with_a_read_change"] = {
      a: float(read[names == a].any(axis=0).mean()) for a in edits.regions}
  return row


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--families", default="thick_strokes,training")
  parser.add_argument("--num", type=int, default=200)
  parser.add_argument("--readers", default="toy-recognizer,toy-judge",
                      help="recognizers that must all read a change (comma-separated)")
  parser.add_argument("--level", type=float, default=labelled_lib.LOCAL,
                      help="local level of the edits (0: the whole style image)")
  parser.add_argument("--caps", default="16,20,25",
                      help="also the ceilings of edits with at most these hole errors")
  args = parser.parse_args()
  families = tuple(args.families.split(","))
  if set(families) - set(toy_inpainting.FAMILIES):
    parser.error(f"--families must be some of {toy_inpainting.FAMILIES}")
  readers = tuple(r for r in args.readers.split(",") if r)
  caps = tuple(float(c) for c in args.caps.split(",") if c)
  result = {"num_faces": args.num, "readers": list(readers), "level": args.level,
            "strengths": list(labelled_lib.STRENGTHS), "refine_steps": REFINE[0]}
  for family in families:
    start = time.time()
    result[family] = measure(family, args.num, readers, args.level, caps)
    c = result[family]["ceiling"]
    print(f"{family}: ceiling {c['count_mean']:.2f} changes at {c['error_over_telea']:.2f}x "
          f"Telea ({time.time() - start:.0f} s)", file=sys.stderr, flush=True)
  print(json.dumps(result, indent=2))


if __name__ == "__main__":
  main()
