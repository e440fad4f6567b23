"""The paper's claims measured on the toy domain: Tables 1-3 with baselines, and a picture.

    python -m benchmarks.toy_tables --run DiFAI=runs/toy_difai \\
        --run "random frozen"=runs/toy_difai_random --run SPADE=runs/toy_difai_spade \\
        --run "batch norm"=runs/toy_difai_batch --coarse_of DiFAI --max_images 500 \\
        --out runs/toy_tables --figure benchmarks/figures/toy_difai_completions.png

Each run is scored by ``difai_jax.evaluate`` under the paper's protocol (Table 1 from completion
0, Table 2 from 4 seeded pairs of perturbed completions per image) on the first ``--max_images``
toy test faces of every mask bucket, with the toy recognizer's probes
(``difai_jax.evaluation.metrics.toy_probes``): the toy FID and, per completion, attributes
and embeddings.
``--coarse_of NAME`` adds the coarse net of that run alone (``--completions coarse``: the
baseline "coarse net", diversity 0 by construction). No LPIPS / Inception weights exist here,
so the LPIPS columns (perceptual distance and the paper's diversity) use a *random* AlexNet
saved as ``<out>/random_lpips_alex_seed0`` (Zhang et al. 2018 report random features as a
weaker but working perceptual distance): these are not comparable with the paper's LPIPS. The
Inception FID is not reported; the toy FID stands in for it. Toy-domain measures added from
the saved per-completion outputs, over all K completions of each input:

- attribute diversity: how many of the perturbed completions 1..K-1 differ from completion 0 in
  a reliably recognised attribute (``metrics.toy.reliable_attributes``), and the share of the
  K(K-1)/2 pairs that differ;
- plausibility: the share of completions whose recognizer embedding lies inside the real toy
  faces' feature distribution (``metrics.toy.plausible_fraction``; real test faces ~0.99).

Intervals (Table 3 at this scale needs them): ``--run NAME=DIR1,DIR2,...`` gives one method's
runs trained with different seeds, ``--seeds 0,1`` evaluates every run with each evaluation seed
(the per-image SeFa edits and diversity pairs; completion 0, hence SSIM / MS-SSIM / LPIPS, does
not depend on it). ``<out>/intervals.md`` then gives, per method, bucket and metric, the mean
over all its (training run, evaluation seed) replicates, their standard deviation and range;
compare.md, toy_measures.md and the figure use each method's first replicate.

Evaluations already written under ``--out`` are reused (delete a run's folder to redo it).
Writes ``--out``/compare.md (Tables 1-3 beside the paper's numbers), ``toy_measures.md`` and,
with ``--figure``, a picture: per row a masked input, its K completions and the ground truth.
"""

# pylint: disable=import-outside-toplevel
from __future__ import annotations

import argparse
import json
import os
import re

import numpy as np

TOY_MEASURES_BUCKETS = ("quickdraw", "10-20", "20-30", "30-40", "40-50")


def slug(name: str) -> str:
  return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def parse_runs(items: list[str]) -> dict[str, list[str]]:
  """{name: [workdir, ...]} from ``NAME=DIR[,DIR...]`` (several: one method, training seeds)."""
  runs = {}
  for item in items:
    name, sep, workdirs = item.partition("=")
    dirs = [d for d in workdirs.split(",") if d]
    if not sep or not name or not dirs:
      raise SystemExit(f"error: --run takes NAME=WORKDIR[,WORKDIR...], got {item!r}")
    if name in runs:
      raise SystemExit(f"error: --run {name!r} given twice (list its workdirs after one '=')")
    runs[name] = dirs
  return runs


def parse_seeds(text: str) -> tuple[int, ...]:
  try:
    seeds = tuple(int(s) for s in text.split(",") if s.strip())
  except ValueError:
    raise SystemExit(f"error: --seeds takes integers separated by commas, got {text!r}") from None
  if not seeds or len(set(seeds)) != len(seeds):
    raise SystemExit(f"error: --seeds needs distinct evaluation seeds, got {text!r}")
  return seeds


def replicate_dirs(out: str, name: str, num_workdirs: int,
                   seeds: tuple[int, ...]) -> list[tuple[int, int, str]]:
  """[(workdir index, evaluation seed, eval_dir)]; a single replicate keeps ``<out>/<slug>``."""
  if num_workdirs == 1 and seeds == (0,):
    return [(0, 0, os.path.join(out, slug(name)))]
  return [(i, seed, os.path.join(out, slug(name), f"train{i}_eval_seed{seed}"))
          for i in range(num_workdirs) for seed in seeds]


def evaluate_runs(runs: dict[str, list[str]], coarse_of: str | None, out: str, max_images: int,
                  buckets: tuple[str, ...], seeds: tuple[int, ...] = (0,),
                  refine_steps: int = 0) -> dict[str, list[list[str]]]:
  """{name: [[eval_dir per evaluation seed] per training run]} of each method, and the coarse
  baseline of ``coarse_of``'s first run (deterministic: one evaluation); reused when present.
  ``refine_steps``: the DiFAI runs' codes fitted to the known pixels (evaluate's flag)."""
  from difai_jax.training import checkpoints
  from difai_jax import pretrained
  from difai_jax.evaluation import loop as eval_loop
  from difai_jax.evaluation import options as eval_options
  from difai_jax.evaluation.metrics import toy_probes
  lpips_dir = random_lpips(out)
  jobs = []                         # (name, run index, workdir, completions, seed, eval_dir)
  if coarse_of:
    jobs.append(("coarse net", 0, runs[coarse_of][0], "coarse", 0,
                 os.path.join(out, slug("coarse net"))))
  for name, workdirs in runs.items():
    jobs += [(name, i, workdirs[i], "difai", seed, eval_dir)
             for i, seed, eval_dir in replicate_dirs(out, name, len(workdirs), seeds)]
  eval_dirs: dict[str, list[list[str]]] = {}
  for n, (name, i, workdir, completions, seed, eval_dir) in enumerate(jobs):
    per_run = eval_dirs.setdefault(name, [])
    if len(per_run) <= i:
      per_run.append([])
    per_run[i].append(eval_dir)
    if os.path.isfile(os.path.join(eval_dir, "results.json")):
      print(f"[{name}] reusing {eval_dir}/results.json", flush=True)
      continue
    size = int(checkpoints.latest_meta(checkpoints.find_stage_dir(
        pretrained.resolve(workdir), "difai"))["config"]["image_size"])
    print(f"[{name}] ({n + 1}/{len(jobs)}) evaluating {workdir} ({completions}, evaluation "
          f"seed {seed})", flush=True)
    eval_loop.evaluate(workdir, eval_options.EvalOptions(
        buckets=buckets, max_images=max_images, diversity_images=max_images,
        lpips_dir=lpips_dir, completions=completions, seed=seed,
        refine_steps=refine_steps if completions == "difai" else 0),
        eval_dir=eval_dir, probes=toy_probes.probes(size))
  return eval_dirs


INTERVAL_METRICS = (("ssim", "SSIM ↑"), ("ms_ssim", "MS-SSIM ↑"), ("lpips", "LPIPS ↓"),
                    ("diversity", "diversity ↑"), ("toy_fid", "toy FID ↓"))


def interval_table(eval_dirs: dict[str, list[list[str]]], buckets: tuple[str, ...]) -> str:
  """Markdown: per bucket and metric, each method's ``mean ± sd [min, max] (R runs x S
  evaluations)``. ``eval_dirs`` gives a method's training runs, each as the list of its
  evaluations (seeds). The mean is over every evaluation; the standard deviation (ddof 1) is
  between the training runs' means when there are several (a metric that does not depend on the
  evaluation seed, such as completion 0's fidelity, has as many independent values as training
  runs), else between the evaluations; the range is over every evaluation."""
  names = list(eval_dirs)
  results = {name: [[_results(d) for d in run] for run in runs]
             for name, runs in eval_dirs.items()}
  lines = ["| bucket | metric | " + " | ".join(names) + " |",
           "|---|---|" + "---:|" * len(names)]
  for bucket in buckets:
    for key, label in INTERVAL_METRICS:
      cells = []
      for name in names:
        per_run = [np.array([r[bucket][key] for r in run
                             if bucket in r and r[bucket].get(key) is not None], np.float64)
                   for run in results[name]]
        per_run = [v for v in per_run if len(v)]
        cells.append(_interval_cell(per_run, 2 if key == "toy_fid" else 4))
      lines.append(f"| {bucket} | {label} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def _results(eval_dir: str) -> dict:
  with open(os.path.join(eval_dir, "results.json"), encoding="utf-8") as f:
    return json.load(f)["results"]


def _interval_cell(per_run: list[np.ndarray], digits: int) -> str:
  """One cell of :func:`interval_table` from each training run's values (one per evaluation)."""
  if not per_run:
    return "n/a"
  values = np.concatenate(per_run)
  means = np.array([v.mean() for v in per_run])
  between = means if len(per_run) > 1 else values
  counts = {len(v) for v in per_run}
  runs = f"{len(per_run)} run{'s' if len(per_run) > 1 else ''}"
  count = (f"{runs} x {counts.pop()}" if len(counts) == 1 else f"{runs}, {len(values)} in all")
  if len(values) == 1:
    return f"{values[0]:.{digits}f} (1)"
  sd = f" ± {between.std(ddof=1):.{digits}f}" if len(between) > 1 else ""
  return (f"{values.mean():.{digits}f}{sd} [{values.min():.{digits}f}, "
          f"{values.max():.{digits}f}] ({count})")


def random_lpips(out: str) -> str:
  """A randomly initialised LPIPS (AlexNet + lin layers, seed 0) saved as a converted directory
  whose name says so: the perceptual distance of these tables (no Inception: FID is the toy
  FID, and a random Inception at 299 px would dominate the time)."""
  import jax
  import jax.numpy as jnp
  from difai_jax import pretrained
  from difai_jax.evaluation import scoring as eval_metrics
  from difai_jax.evaluation.metrics import lpips as lpips_lib
  path = os.path.join(out, "random_lpips_alex_seed0")
  if not os.path.isfile(os.path.join(path, "config.json")):
    x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
    variables = eval_metrics.random_variables(lpips_lib.LPIPS(net="alex"), x, x, seed=0)
    pretrained.save(path, "lpips", {"net": "alex"}, variables)
  return path


def toy_measures(eval_dirs: dict[str, str], buckets: tuple[str, ...]) -> str:
  """Markdown: toy FID, attribute diversity and plausibility per run and bucket."""
  from difai_jax.evaluation.metrics import toy
  attributes = toy.reliable_attributes()
  module, variables = toy.load_toy_recognizer()
  names = [name for name, _ in module.attributes]
  real, _ = toy.toy_test_faces(2000, start=toy.TEST_START - 2000)      # train-split faces
  model = toy.RealFeatureModel.fit(toy.recognizer_features(module, variables, real))
  lines = ["| run | bucket | toy FID | completions differing from completion 0 (of K-1) | "
           "pairs differing | plausible completions |", "|---|---|---:|---:|---:|---:|"]
  for name, eval_dir in eval_dirs.items():
    with open(os.path.join(eval_dir, "results.json"), encoding="utf-8") as f:
      report = json.load(f)
    k = int(report["num_completions"])
    for bucket in buckets:
      labels = np.load(os.path.join(eval_dir, f"toy_attributes_{bucket}.npz"))["values"]
      embeddings = np.load(os.path.join(eval_dir, f"toy_embedding_{bucket}.npz"))["values"]
      div = toy.attribute_diversity(labels.astype(np.int32), names, attributes)
      plausible = toy.plausible_fraction(model, embeddings.reshape(-1, embeddings.shape[-1]))
      fid = report["results"][bucket].get("toy_fid")
      lines.append(f"| {name} | {bucket} | {fid:.2f} | {div['differ_from_first_mean']:.2f} "
                   f"/ {k - 1} | {div['pairwise_mean']:.3f} | {plausible:.3f} |")
  real_test, _ = toy.toy_test_faces(2000)
  floor = toy.plausible_fraction(model, toy.recognizer_features(module, variables, real_test))
  lines += ["", f"Attributes counted: {', '.join(attributes)} (the judge's reliable "
            f"ones). Plausible: real toy test faces give {floor:.3f}."]
  return "\n".join(lines) + "\n"


def figure(workdir: str, path: str, bucket: str = "30-40", rows: int = 6) -> None:
  """Per row: masked input, coarse, the K completions, ground truth (toy test faces)."""
  import jax
  import jax.numpy as jnp
  from difai_jax import pipeline
  from difai_jax.evaluation import options as eval_options
  from difai_jax.data import image_io
  from difai_jax.evaluation import loop as eval_loop
  from difai_jax.training import checkpoints
  from difai_jax.data import loader as data_pipeline
  inference = checkpoints.load_difai(workdir)
  spec = eval_loop.completion_spec(inference, eval_options.EvalOptions())
  data = eval_loop.eval_data_config(inference.config, os.path.dirname(path) or ".")
  data.bucket_dir = os.path.join(os.path.dirname(os.path.abspath(path)), ".toy_tables_masks")
  size = int(inference.config.image_size)
  batch = data_pipeline.make_eval_dataset(data, bucket=bucket, image_size=size,
                                          batch_size=rows, process_index=0, process_count=1,
                                          num_images=rows, verbose=False)[0]
  index = jnp.asarray(batch["index"])
  components, degrees = eval_loop.edits_for(index, spec)
  out = jax.jit(lambda v, i, m, c, d: pipeline.inpaint(inference.models, v, i, m, c, d,
                                                       spec.sampling.layers))(
      inference.variables, jnp.asarray(batch["image"]), jnp.asarray(batch["mask"]),
      components, degrees)
  columns = [np.asarray(out["i_masked"]), np.asarray(out["i_coarse"])]
  columns += list(np.asarray(out["completions"]))
  columns.append(np.asarray(batch["image"]))
  pad = 2
  sheet = np.ones((rows * (size + pad), len(columns) * (size + pad), 3), np.float32)
  for r in range(rows):
    for c, col in enumerate(columns):
      sheet[r * (size + pad):r * (size + pad) + size,
            c * (size + pad):c * (size + pad) + size] = col[r]
  image_io.save_png(path, image_io.to_uint8(sheet))
  print(f"wrote {path}: rows of masked input ({bucket} masks), coarse, "
        f"{spec.num_completions} completions, ground truth")


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--run", action="append", default=[],
                      help="NAME=WORKDIR[,WORKDIR...] (repeat; several workdirs: training seeds)")
  parser.add_argument("--seeds", default="0",
                      help="evaluation seeds, e.g. 0,1,2 (intervals.md over the replicates)")
  parser.add_argument("--coarse_of", default=None, help="also score this run's coarse net alone")
  parser.add_argument("--max_images", type=int, default=500)
  parser.add_argument("--buckets", default=",".join(TOY_MEASURES_BUCKETS))
  parser.add_argument("--out", required=True)
  parser.add_argument("--figure", default=None, help="PNG of the first run's completions")
  parser.add_argument("--refine_steps", type=int, default=0,
                      help="not the paper: fit the DiFAI runs' codes to the known pixels in this "
                           "many Adam steps (evaluate --refine_steps)")
  args = parser.parse_args(argv)
  runs = parse_runs(args.run)
  if not runs:
    raise SystemExit("error: give at least one --run NAME=WORKDIR")
  if args.coarse_of and args.coarse_of not in runs:
    raise SystemExit(f"error: --coarse_of {args.coarse_of!r} is not one of {list(runs)}")
  buckets = tuple(b for b in args.buckets.split(",") if b)
  seeds = parse_seeds(args.seeds)
  from difai_jax.evaluation import comparison
  eval_dirs = evaluate_runs(runs, args.coarse_of, args.out, args.max_images, buckets, seeds,
                            args.refine_steps)
  first = {name: runs_of[0][0] for name, runs_of in eval_dirs.items()}
  comparison.run(list(first.values()), list(first), buckets, args.out)
  measures = toy_measures(first, buckets)
  with open(os.path.join(args.out, "toy_measures.md"), "w", encoding="utf-8") as f:
    f.write(measures)
  print(measures, end="")
  if any(sum(map(len, runs_of)) > 1 for runs_of in eval_dirs.values()):
    intervals = interval_table(eval_dirs, buckets)
    with open(os.path.join(args.out, "intervals.md"), "w", encoding="utf-8") as f:
      f.write(intervals)
    print(intervals, end="")
  if args.figure:
    figure(next(iter(runs.values()))[0], args.figure)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
