"""Quality of the shipped toy networks, measured with toy-domain measures (no downloaded weights).

    python -m benchmarks.toy_quality [--num 2000] [--stylegan2 DIR --only_stylegan2 [--judge DIR]
        [--attribute_num 10000] [--class_figure PNG [--class_figure_classes A:C1,C2]]]
        [--only_psp] [--refine_steps 600 [--refine_figure PNG]]
        [--inpainting] [--difai toy-difai]
    python -m benchmarks.toy_quality --only_recognizer [--recognizer DIR] [--write_quality]

Every toy-domain measure reads the shipped judge (``toy-judge``: a recognizer no training loss
uses; ``difai_jax.evaluation.metrics.toy`` says why).
- StyleGAN2 (``toy-stylegan2``): toy FID (Frechet distance in the judge's feature
  space) of ``num`` samples (truncation 1) against ``num`` real toy test faces, beside the toy
  FID of a second set of real faces (the floor) and the share of samples inside the real
  faces' feature distribution (``plausible_fraction``; real faces: ~0.99) and, per reliably
  recognised attribute, how far the samples' predicted class frequencies are from the test
  faces' (``attribute_gap_points``: total variation distance in percentage points; the largest
  and that of the second set of real faces beside it); ``--attribute_num N`` measures the gaps
  again on N samples against N faces (``attribute_gaps_at``), where sampling noise is smaller;
  ``--class_figure PNG`` shows samples and faces the judge reads as each named class (default
  ``hair_style:bald,curly``, the classes of the shipped generator's largest gap).
- pSp (``toy-psp``): mean L2 and PSNR of reconstructions of 256 toy test faces; with
  ``--refine_steps N``, also the PSNR after N Adam steps on W+ from the encoder's codes of the
  first ``--refine_num`` of them (``difai_jax.invert.refine``: what the frozen generator can
  draw, so the encoder's share of the error; not part of the DiFAI pipeline).
- recognizer (the judge, or ``--recognizer``): accuracy per attribute on 2,000 toy test faces
  and the rest of ``toy.quality_record``; ``--write_quality`` stores it as ``quality.json``
  beside the recognizer's weights (where ``toy.reliable_attributes`` reads it).
- with ``--inpainting``: DiFAI, its coarse net, OpenCV Telea and a flat fill on 200 held-out
  faces and three mask families (``benchmarks/toy_inpainting.py``, which documents the rows).
Prints one JSON object.
"""

import argparse
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from difai_jax import invert
from difai_jax import pipeline
from difai_jax import pretrained
from difai_jax.data import image_io
from difai_jax.data import toy_faces
from difai_jax.evaluation.metrics import psnr as psnr_lib
from difai_jax.evaluation.metrics import toy
from difai_jax.training.stages import psp as psp_stage
from benchmarks import toy_inpainting


# More faces than the test split holds (--attribute_num): toy faces from this index on, outside
# the shipped networks' train (0 .. 27,999) and test (28,000 .. 29,999) splits: the renderer's
# same distribution, never seen in training.
BEYOND_SPLITS = 30_000


def stylegan2_quality(num: int, source: str = "toy-stylegan2", judge: str | None = None,
                      attribute_num: int | None = None) -> dict:
  """The generator's record (module docstring) measured with ``judge``: a toy_recognizer
  directory or short name, the shipped judge by default (another recognizer cross-checks a
  toy FID, e.g. one of another architecture, never used in training).

  ``attribute_num``: also the attribute gaps of that many samples against as many faces, with
  their real-against-real floor (``attribute_gaps_at``): with 2,000 a side the floor is ~3-4
  points of sampling noise, which hides a smaller bias; 10,000 a side bring it to ~1.3. Faces
  past the test split's 2,000 come from index ``BEYOND_SPLITS`` on."""
  module, variables = pretrained.load(source)
  rec, rec_vars = toy.load_toy_recognizer(judge)
  samples = _sampler(module, variables)
  reliable = toy.reliable_attributes(judge)

  def gaps(fake, real, real2):
    fake, real, real2 = (toy.predict_attributes(rec, rec_vars, x) for x in (fake, real, real2))
    return (fake, real, real2,
            toy.attribute_frequency_gaps(fake.labels, real.labels, fake.names, reliable),
            toy.attribute_frequency_gaps(real2.labels, real.labels, fake.names, reliable))

  real, _ = toy.toy_test_faces(num)
  real2, _ = toy.toy_test_faces(num, start=toy.TEST_START - num)      # train-split faces
  fake, real, real2, gap, floor = gaps(samples(num), real, real2)
  model = toy.RealFeatureModel.fit(real2.embedding)
  record = {"toy_fid_samples": toy.toy_fid(fake.embedding, real.embedding),
            "toy_fid_real_vs_real": toy.toy_fid(real2.embedding, real.embedding),
            "plausible_fraction_samples": toy.plausible_fraction(model, fake.embedding),
            "plausible_fraction_real": toy.plausible_fraction(model, real.embedding),
            # predicted attribute frequencies, samples against test faces (total variation, in
            # points; real against real beside it)
            **_gap_record(gap, floor)}
  if attribute_num:
    n = int(attribute_num)
    start = toy.TEST_START if n <= toy.TEST_SIZE else BEYOND_SPLITS
    *_, gap, floor = gaps(samples(n), toy.toy_test_faces(n, start=start)[0],
                          toy.toy_test_faces(n, start=start + n)[0])
    record["attribute_gaps_at"] = {"num": n, "first_face": start, **_gap_record(gap, floor)}
  return record


def _sampler(module, variables):
  """``n -> (n, H, W, 3)``: the generator's samples at truncation 1 (the stored noise), z of
  batch i drawn from key i: the same samples for every measure here."""
  apply = jax.jit(lambda z: module.apply(variables, [z]))
  return lambda n: np.concatenate([
      np.asarray(apply(jax.random.normal(jax.random.key(i), (250, module.style_dim))))
      for i in range(-(-n // 250))])[:n]


def parse_classes(spec: str) -> tuple[str, tuple[str, ...]]:
  """``"hair_style:bald,curly"`` -> ``("hair_style", ("bald", "curly"))``, names checked
  against ``toy_faces.ATTRIBUTES``."""
  attribute, _, names = spec.partition(":")
  known = toy_faces.ATTRIBUTES.get(attribute)
  if known is None or not names:
    raise ValueError(f"--class_figure_classes {spec!r}: expected ATTRIBUTE:CLASS[,CLASS...] "
                     f"with ATTRIBUTE one of {', '.join(toy_faces.ATTRIBUTES)}")
  classes = tuple(names.split(","))
  unknown = [c for c in classes if c not in known]
  if unknown:
    raise ValueError(f"--class_figure_classes: {attribute} has no class {unknown[0]!r} "
                     f"(its classes: {', '.join(known)})")
  return attribute, classes


def class_figure(path: str, spec: str, source: str, judge: str | None = None,
                 num: int = 2000, per_row: int = 12) -> dict:
  """A PNG of what the judge reads as each named class: per class one row of the generator's
  samples (the first ``per_row`` of ``num``), then one row of test faces; white where fewer
  were found. What a frequency gap hides: whether the generator draws the class at all.
  Returns how many of the ``num`` samples and faces it read as each class."""
  attribute, classes = parse_classes(spec)
  module, variables = pretrained.load(source)
  rec, rec_vars = toy.load_toy_recognizer(judge)
  images = {"samples": _sampler(module, variables)(num),
            "faces": toy.toy_test_faces(min(num, toy.TEST_SIZE))[0]}
  rows, counts = [], {}
  for kind in ("samples", "faces"):
    pred = toy.predict_attributes(rec, rec_vars, images[kind])
    labels = pred.labels[:, pred.names.index(attribute)]
    for name in classes:
      chosen = images[kind][labels == toy_faces.ATTRIBUTES[attribute].index(name)]
      counts[f"{kind}/{name}"] = int(len(chosen))
      blank = np.ones((per_row - min(len(chosen), per_row),) + images[kind].shape[1:])
      rows.append(np.concatenate([np.clip(chosen[:per_row], -1, 1), blank]))
  image_io.save_png(path, image_io.make_grid(np.concatenate(rows), ncol=per_row))
  return {"attribute": attribute, "num": num, "counts": counts}


def _gap_record(gaps: dict, floor: dict) -> dict:
  return {"attribute_gap_points_max": round(max(gaps.values()), 1),
          "attribute_gap_points_real_vs_real_max": round(max(floor.values()), 1),
          "attribute_gap_points": {name: round(gap, 1) for name, gap in gaps.items()}}


def refined_reconstruction_quality(module, variables, steps: int, num: int = 64,
                                   lr: float = 0.01, figure: str = "") -> dict:
  """PSNR of the encoder's reconstructions of the first ``num`` test faces and of the codes
  refined by ``steps`` Adam steps on W+ (``invert.refine``), with the stored noise.

  ``figure``: a PNG of the first 8 faces, one per row: the face | the encoder's reconstruction
  | the refined codes' reconstruction.
  """
  faces, _ = toy.toy_test_faces(num, size=module.input_size)
  recon, codes = jax.jit(lambda x: module.apply(variables, x, return_latents=True))(faces)
  refined, _ = invert.refine(module, variables, faces, codes, steps=steps, lr=lr,
                             log_every=max(steps // 4, 1))
  target = np.asarray(pipeline.resize(jnp.asarray(faces), refined.shape[1]))
  if figure:
    rows = np.stack([target, np.asarray(recon), refined], axis=1)[:8]
    image_io.save_png(figure, image_io.make_grid(rows.reshape((-1,) + rows.shape[2:]), ncol=3))
  return {"num_images": num, "steps": steps, "lr": lr,
          "psnr_encoder": float(psnr_lib.psnr(recon, target, data_range=2.0).mean()),
          "psnr_refined": float(psnr_lib.psnr(refined, target, data_range=2.0).mean())}


def recognizer_record(source: str, write: bool = False) -> dict:
  """``toy.quality_record`` of a recognizer (directory or short name); with ``write``, stored
  as ``quality.json`` beside its weights."""
  module, variables = toy.load_toy_recognizer(source)
  record = toy.quality_record(module, variables)
  if write:
    path = os.path.join(pretrained.resolve(source), "quality.json")
    with open(path, "w", encoding="utf-8") as f:
      json.dump(record, f, indent=2)
      f.write("\n")
  return record


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--num", type=int, default=2000)
  parser.add_argument("--stylegan2", default="toy-stylegan2",
                      help="the generator to score (an exported directory or short name)")
  parser.add_argument("--only_stylegan2", action="store_true")
  parser.add_argument("--attribute_num", type=int, default=0,
                      help="also the StyleGAN2's attribute gaps on this many samples against as "
                           "many faces (e.g. 10000: a ~1.3-point floor instead of ~3.7)")
  parser.add_argument("--class_figure", default="",
                      help="with --only_stylegan2: a PNG of the samples, then the test faces, "
                           "that the judge reads as each of --class_figure_classes")
  parser.add_argument("--class_figure_classes", default="hair_style:bald,curly",
                      help="ATTRIBUTE:CLASS[,CLASS...] for --class_figure")
  parser.add_argument("--judge", default=None,
                      help="the recognizer the StyleGAN2's record is measured with (a "
                           "toy_recognizer directory or short name; default: the shipped judge)")
  parser.add_argument("--psp", default="toy-psp",
                      help="the pSp to score (an exported directory or short name)")
  parser.add_argument("--only_psp", action="store_true",
                      help="only the pSp's reconstruction L2 / PSNR on 256 test faces")
  parser.add_argument("--refine_steps", type=int, default=0,
                      help="also the pSp's PSNR after this many Adam steps on W+ (invert.refine)")
  parser.add_argument("--refine_num", type=int, default=64,
                      help="test faces for --refine_steps (one batch)")
  parser.add_argument("--refine_figure", default="",
                      help="with --refine_steps: a PNG of 8 faces | encoder | refined codes")
  parser.add_argument("--inpainting", action="store_true",
                      help="also score DiFAI / coarse / Telea on held-out faces (needs cv2)")
  parser.add_argument("--difai", default="toy-difai", help="the DiFAI run for --inpainting")
  parser.add_argument("--recognizer", default="toy-judge",
                      help="the recognizer to score with --only_recognizer")
  parser.add_argument("--only_recognizer", action="store_true",
                      help="only the recognizer's quality record (toy.quality_record)")
  parser.add_argument("--write_quality", action="store_true",
                      help="with --only_recognizer: write it to quality.json beside the weights")
  args = parser.parse_args()
  if args.write_quality and not args.only_recognizer:
    parser.error("--write_quality goes with --only_recognizer")
  if args.only_recognizer:
    print(json.dumps(recognizer_record(args.recognizer, args.write_quality), indent=2))
    return
  if args.refine_steps < 0 or args.refine_num < 1:
    parser.error("--refine_steps must be >= 0 and --refine_num >= 1")
  if args.refine_figure and not args.refine_steps:
    parser.error("--refine_figure goes with --refine_steps")
  psp, psp_vars = pretrained.load(args.psp)

  def psp_record():
    record = psp_stage.reconstruction_quality(psp, psp_vars, num_images=256)
    if args.refine_steps:
      record["refined"] = refined_reconstruction_quality(
          psp, psp_vars, args.refine_steps, args.refine_num, figure=args.refine_figure)
    return record

  if args.only_psp:
    print(json.dumps({"psp": psp_record()}, indent=2, default=float))
    return
  if args.attribute_num < 0:
    parser.error("--attribute_num must be >= 0 (0: only the --num samples' gaps)")
  if args.class_figure and not args.only_stylegan2:
    parser.error("--class_figure goes with --only_stylegan2")
  if args.class_figure:
    try:
      parse_classes(args.class_figure_classes)
    except ValueError as e:
      parser.error(str(e))
  result = {"stylegan2": stylegan2_quality(args.num, args.stylegan2, args.judge,
                                           args.attribute_num)}
  if args.class_figure:
    result["stylegan2"]["class_figure"] = class_figure(
        args.class_figure, args.class_figure_classes, args.stylegan2, args.judge, args.num)
  if args.only_stylegan2:
    print(json.dumps(result, indent=2, default=float))
    return
  result["psp"] = psp_record()
  result["judge"] = recognizer_record("toy-judge")
  if args.inpainting:
    result["inpainting"] = toy_inpainting.evaluate(args.difai)
  print(json.dumps(result, indent=2, default=float))


if __name__ == "__main__":
  main()
