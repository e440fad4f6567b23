"""Diverse completions of your own faces: ``python -m difai_jax.inpaint``.

    python -m difai_jax.inpaint --checkpoint RUN --image face.png --mask mask.png \
        --num_completions 8 --out OUTDIR [--walk]

``RUN`` is a trained DiFAI workdir (a multi-stage run's top directory or its ``difai`` stage):
the latest checkpoint, the coarse net of its run and the pSp / StyleGAN2 its config names are
loaded by :func:`difai_jax.training.checkpoints.load_difai`. Then, as in the paper (Sec. 3, Fig. 1
and
Fig. 4): I_masked -> coarse -> pSp W+ -> K style images (j = 0 unperturbed, j >= 1 moved along
SeFa directions, eq. 3) -> one completion per style image (eq. 5).

``--edits labelled`` (not the paper; :mod:`difai_jax.labelled_edits`): completions 1..K-1 come
from attribute directions fitted on labelled faces (the run's ``labelled_edits.npz``, written by
``python -m difai_jax.fit_edits``; shipped for ``toy-difai``), each the least edit that a
recognizer (``--edit_recognizer``, never the toy judge) reads as a change of an attribute whose
region lies in the hole; the log names what each completion changed. ``--walk`` stays SeFa's.

Any input size: the model sees the image resized to its resolution (a non-square image is
stretched; the input's hole pixels never reach it) with every model pixel that overlaps the
hole counted as hole;
each completion is resized back to the input's size and composited there in uint8 with the
ORIGINAL known pixels (``where(mask == 1, input, completion)``), so known pixels stay bit-exact.

Photos (``--align``, :mod:`difai_jax.inference.face`): the shipped MTCNN finds the face and its five
landmarks, the model sees the face's FFHQ crop (eyes level, as FFHQ / CelebA-HQ faces are
framed) with the photo-space mask warped along (a crop pixel that any hole pixel reaches is
hole), and each completion is warped back into the photo's hole pixels only; every other pixel
of the photo is bit-exact. ``--align auto`` (the default) aligns every image that is not
already a square of the model's size, and falls back to the plain resize, with a note, when no
face is found or when the image already is the face's crop (a CelebA-HQ / FFHQ face: the crop
spans >= 85 % of its side, centred, rolled <= 3 deg); a hole reaching outside the crop grows
the crop about its centre, with a note. ``on`` requires a face, always crops, and refuses a hole
outside the crop; ``off`` never aligns. Several faces stop with a list of them (box, score);
``--face N`` picks one (0 = the largest).
The detector looks at the photo as given, hole pixels included (the face is where it is); the
model never sees them.

Writes, per image (OUTDIR itself, or OUTDIR/<stem>/ in folder mode):
  * ``completion_00.png`` ... ``completion_{K-1}.png`` (00 = the unperturbed style image's);
  * ``grid.png``: masked input | mask | coarse | I_style | the K completions (one row);
  * for an aligned photo, ``aligned.png``: the same row at the model's resolution, in the crop;
  * with ``--walk``: ``walk.png`` (a strip) and ``walk.gif``: SeFa direction ``--walk_component``
    walked from ``-walk_max_degree`` to ``+walk_max_degree`` in ``--walk_steps`` (Fig. 4).

Masks: 1 (white) = known, 0 (black) = hole by default; ``--mask_convention hole_is_white`` reads
PIC / EXE-GAN / Quickdraw-style files. A mask must match its image's size (or pass
``--resize_mask``); non-binary masks are thresholded at 0.5 with a warning (``--strict_mask``
refuses them); all-hole and no-hole masks are refused; an RGBA mask is read from its alpha
channel when its colour is uniform. ``--image DIR --mask DIR`` pairs files by name (stem) and
runs them in batches; ``--mask FILE`` with ``--image DIR`` uses one mask for all; with
``--skip_bad`` unusable pairs are reported and skipped instead of stopping the run.

Everything that can be checked without the models is checked first, in this order: the output
folder (in the first second, before JAX is imported), the flags and every input file, then the
run's metadata (model size, SeFa directions, W+ layers) and the faces (``--align``); only then
are the models loaded. The compiled pipeline (and MTCNN) is kept in JAX's persistent
compilation cache (``--compilation_cache``, default ``~/.cache/difai_jax/jax_cache``), so a
second call of the same shapes skips compiling.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Sequence

import numpy as np

# JAX and the models are imported in run(), after the flags, the output folder and the input
# files are checked: a wrong input is refused in a second or two.
from difai_jax import cli
from difai_jax import runtime
from difai_jax.data import image_io
from difai_jax.inference import inputs as inputs_lib
from difai_jax.inference import outputs as outputs_lib


def _batched(examples: list[inputs_lib.Example], batch: int):
  for start in range(0, len(examples), batch):
    chunk = examples[start:start + batch]
    pad = chunk + [chunk[-1]] * (batch - len(chunk))
    valid = np.arange(batch) < len(chunk)     # padding rows stay out of batch statistics
    yield chunk, (np.stack([e.model_image for e in pad]), np.stack([e.model_mask for e in pad]),
                  valid)


def _report(problems: list[str], total: int) -> str:
  """One problem of a single input as it is; several as a list under a count."""
  if total == 1:
    return problems[0]
  return f"{len(problems)} of {total} input(s) cannot be used:\n  " + "\n  ".join(problems)


def _check_modes(mask_convention: str, align: str, face: int | None, edits=("sefa", None, None)):
  """The modes' values, and ``edits``: (--edits, --components, --degrees) that agree."""
  edits, components, degrees = edits
  if edits not in runtime.EDIT_SOURCES:
    raise ValueError(f"--edits must be sefa (the paper) or labelled; got {edits!r}")
  if edits == "labelled" and (components is not None or degrees is not None):
    raise ValueError("--components / --degrees choose SeFa edits; --edits labelled searches "
                     "its own (drop them, or use --edits sefa)")
  if mask_convention not in image_io.MASK_CONVENTIONS:
    raise ValueError(f"--mask_convention must be one of {image_io.MASK_CONVENTIONS}")
  if align not in inputs_lib.ALIGN_MODES:
    raise ValueError(f"--align must be one of {', '.join(inputs_lib.ALIGN_MODES)}; "
                     f"got {align!r}")
  if face is not None and (align == "off" or face < 0):
    raise ValueError(f"--face {face}: " + ("faces are numbered from 0" if face < 0 else
                                           "picking a face needs --align on or auto"))


def _read_inputs(pairs, *, convention: str, resize_mask: bool, strict_mask: bool,
                 skip_bad: bool):
  """Every input file, read and checked: ``(inputs, problems)``, all problems at once."""
  inputs, problems = [], []
  for image_path, mask_path in pairs:
    try:
      inputs.append((image_path, mask_path,
                     *inputs_lib.read_input(image_path, mask_path, convention=convention,
                                            resize_mask=resize_mask, strict_mask=strict_mask)))
    except inputs_lib.InputError as e:
      problems.append(str(e))
  if problems and not skip_bad:
    raise inputs_lib.InputError(_report(problems, len(pairs)))
  return inputs, problems


def _run_edits(info, k_and_flag, components, degrees, degree, layers, walk, walk_component):
  """The edits and W+ layers checked against what the run's metadata says."""
  num_completions, flag = k_and_flag
  comps, degs = inputs_lib.edits(num_completions, components, degrees, degree, info.n_directions,
                                 flag=flag)
  if walk and not 0 <= walk_component < info.n_directions:
    raise ValueError(f"--walk_component {walk_component} out of range: the generator has "
                     f"{info.n_directions} directions (0..{info.n_directions - 1})")
  if layers is not None:
    return comps, degs, inputs_lib.check_layers(layers, info.n_latent)
  return comps, degs, inputs_lib.check_layers(info.config_layers, info.n_latent,
                                              source="config.sefa.layers")


def _examples(inputs, problems, size: int, *, align: str, face: int | None, skip_bad: bool,
              total: int, log) -> list[inputs_lib.Example]:
  """The model-resolution examples (faces found with ``align``); problems reported or raised."""
  from difai_jax.inference.face import detect  # pylint: disable=import-outside-toplevel
  examples = []
  for image_path, mask_path, image_uint8, known in inputs:
    try:
      alignment, notes = detect.find_alignment(image_path, image_uint8, size, mode=align,
                                               face=face, known=known)
      examples.append(inputs_lib.make_example(image_path, mask_path, image_uint8, known, size,
                                              alignment=alignment, notes=notes))
    except inputs_lib.InputError as e:
      problems.append(str(e))
  if problems:
    if not skip_bad or not examples:
      raise inputs_lib.InputError(_report(problems, total))
    for problem in problems:
      print(f"skipped: {problem}", file=sys.stderr)
    print(f"--skip_bad: {len(problems)} of {total} input(s) skipped, {len(examples)} left",
          file=sys.stderr)
  for ex in examples:
    for note in ex.notes:
      log(note)
  return examples


def _inpaint_examples(checkpoint: str, examples, targets, edit_lists, *, layers, batch_size: int,
                      gif_ms: int, cache: str | None, log,
                      refine=(0, runtime.REFINE_LR), labelled=None) -> list[dict]:
  """Loads the models and writes every example's outputs to its target folder.

  ``edit_lists``: ``(components, degrees)`` of the completions, then optionally those of the
  walk (its first frame, the unperturbed one, is dropped). ``refine``: (steps, lr) of the
  fitting of the codes to the known pixels (:class:`Inpainter`'s ``refine_steps``).
  ``labelled``: ``(K, recognizer)``: completions 1..K-1 from the labelled edits instead (the
  first entry of ``edit_lists`` is then unused).
  """
  from difai_jax import mesh as mesh_lib  # pylint: disable=import-outside-toplevel
  from difai_jax.inference.inpainter import Inpainter  # pylint: disable=import-outside-toplevel
  inpainter = Inpainter(checkpoint, layers=layers, compilation_cache="off",  # cache: run()'s
                        refine_steps=refine[0], refine_lr=refine[1],
                        edits="labelled" if labelled else "sefa",
                        **({"edit_recognizer": labelled[1]} if labelled else {}))
  comps, degs = edit_lists[0]
  edits = (f"labelled edits: the least that {labelled[1]} reads as an attribute change"
           if labelled else f"SeFa components {comps}, degrees {degs}")
  log(f"DiFAI step {inpainter.step} from {checkpoint}: {inpainter.image_size} px, "
      f"{len(examples)} input(s), K = {labelled[0] if labelled else len(comps) + 1} "
      f"completions ({edits})" + (f"; codes fitted to the known pixels in {refine[0]} Adam "
                                  f"steps (lr {refine[1]})" if refine[0] else ""))
  batch = mesh_lib.round_up(min(max(batch_size, 1), len(examples)), inpainter.devices)
  log("compiling the pipeline for these shapes" + (f" (or reading it from the cache {cache})"
                                                   if cache else "") + " ...")
  arrays = [(np.broadcast_to(np.asarray(c, np.int32), (batch, len(c))).copy(),
             np.broadcast_to(np.asarray(d, np.float32), (batch, len(d))).copy())
            for c, d in edit_lists]
  written, t0 = [], time.time()
  for chunk, (images, masks, valid) in _batched(examples, batch):
    results = [inpainter.labelled_outputs(images, masks, valid, labelled[0]) if labelled and not j
               else inpainter.model_outputs(images, masks, *e, valid)
               for j, e in enumerate(arrays)]
    for i, ex in enumerate(chunk):
      mine = {"i_coarse": results[0]["i_coarse"][i], "i_style": results[0]["i_style"][i],
              "completions": results[0]["completions"][:, i]}
      if labelled:
        log(f"{ex.name}: " + "; ".join(f"{j + 1:02d} {what}"
                                       for j, what in enumerate(results[0]["edits"][i])))
      walk_frames = results[1]["completions"][1:, i] if len(results) > 1 else None
      written.append(outputs_lib.write_outputs(ex, targets(ex), mine, walk_frames, gif_ms))
    log(f"{len(written)}/{len(examples)} done ({time.time() - t0:.1f} s)")
  return written


def run(checkpoint: str, image: str, mask: str, out_dir: str, *,
        num_completions: int | None = None, components: Sequence[int] | None = None,
        degrees: Sequence[float] | None = None, degree: float = 5.0,
        layers: Sequence[int] | None = None, walk: bool = False, walk_component: int = 0,
        walk_steps: int = 9, walk_max_degree: float = 10.0, gif_ms: int = 150,
        mask_convention: str = "known_is_white", resize_mask: bool = False,
        strict_mask: bool = False, batch_size: int = 8, skip_bad: bool = False,
        align: str = "auto", face: int | None = None, compilation_cache: str | None = "off",
        verbose: bool = True, num: int | None = None, refine_steps: int = 0,
        refine_lr: float = runtime.REFINE_LR, edits: str = "sefa",
        edit_recognizer: str = "toy-recognizer") -> list[dict]:
  """Inpaints every (image, mask) pair with K = ``num_completions`` (default 8); returns, per
  input, the paths written. ``num`` is the deprecated name of ``num_completions``.

  Every check that needs no weights runs before the models are loaded (see the module
  docstring), the face search of ``align`` included; with ``skip_bad`` unusable inputs are
  reported on stderr and left out. ``compilation_cache`` is a folder for
  :func:`cli.enable_compilation_cache` (None: the user cache folder; "off": none, the default
  of this function; the command turns it on). ``refine_steps`` > 0 fits each input's W+ codes
  to its known pixels before the edits (not the paper; :func:`pipeline.fit_codes_to_known`).
  ``edits="labelled"``: completions 1..K-1 from the least attribute edits ``edit_recognizer``
  reads (not the paper; :mod:`difai_jax.labelled_edits`, the run's ``labelled_edits.npz``).
  """
  flag = "--num" if num is not None else "--num_completions"
  num_completions = runtime.deprecated_alias(num_completions, num, "num", 8)
  log = (lambda *a: print(*a, flush=True)) if verbose else (lambda *a: None)
  _check_modes(mask_convention, align, face, (edits, components, degrees))
  problem = runtime.refine_problem(refine_steps, refine_lr)
  if problem:
    raise ValueError(problem)
  cli.check_output_dir(out_dir, "--out")
  inputs_lib.edits(num_completions, components, degrees, degree, flag=flag)   # ranges: later
  pairs = inputs_lib.pair_inputs(image, mask)
  inputs, problems = _read_inputs(pairs, convention=mask_convention, resize_mask=resize_mask,
                                  strict_mask=strict_mask, skip_bad=skip_bad)
  # What the run's metadata says: model size, SeFa directions, W+ layers (no weights yet).
  from difai_jax.inference import model as model_lib  # pylint: disable=import-outside-toplevel
  info = model_lib.read_run_info(checkpoint)
  comps, degs, layers = _run_edits(info, (num_completions, flag), components, degrees, degree,
                                   layers, walk, walk_component)
  if edits == "labelled":
    from difai_jax import labelled_edits  # pylint: disable=import-outside-toplevel
    labelled_edits.load_for_run(info.difai_dir)    # there, before the faces and the weights
  cache = cli.enable_compilation_cache(compilation_cache)   # MTCNN's shapes are kept too
  examples = _examples(inputs, problems, info.image_size, align=align, face=face,
                       skip_bad=skip_bad, total=len(pairs), log=log)
  edit_lists = [(comps, degs)]
  if walk:
    edit_lists.append(([walk_component] * walk_steps,
                       list(np.linspace(-walk_max_degree, walk_max_degree, walk_steps))))
  folder_mode = os.path.isdir(image)
  targets = lambda ex: os.path.join(out_dir, ex.name) if folder_mode else out_dir
  return _inpaint_examples(checkpoint, examples, targets, edit_lists, layers=layers,
                           batch_size=batch_size, gif_ms=gif_ms, cache=cache, log=log,
                           refine=(refine_steps, refine_lr),
                           labelled=((num_completions, edit_recognizer)
                                     if edits == "labelled" else None))


def _define_flags():
  """The CLI's flags, defined only when run as a program (other entry points share names)."""
  from absl import flags  # pylint: disable=import-outside-toplevel
  flags.DEFINE_string("checkpoint", None, "trained DiFAI workdir (run or its difai stage)")
  flags.DEFINE_string("image", None, "face image file, or a folder of them")
  flags.DEFINE_string("mask", None, "mask file, or a folder of masks named like the images")
  flags.DEFINE_string("out", None, "output folder")
  flags.DEFINE_integer("num_completions", 8, "K completions per input (1 + the number of SeFa "
                       "edits)", lower_bound=1)
  flags.DEFINE_integer("num", None, "deprecated alias of --num_completions (kept for one "
                       "release)", lower_bound=1)
  flags.DEFINE_list("components", None, "SeFa directions of completions 1..K-1 (default "
                    "0..K-2)")
  flags.DEFINE_list("degrees", None, "their degrees (default +d, -d, +d, ... with d = --degree)")
  flags.DEFINE_float("degree", 5.0, "default degree magnitude")
  flags.DEFINE_list("layers", None, "W+ layers the edits move (default: the run's "
                    "config.sefa.layers, else all)")
  flags.DEFINE_boolean("walk", False, "also write walk.png / walk.gif: a continuous SeFa walk")
  flags.DEFINE_integer("walk_component", 0, "SeFa direction of the walk")
  flags.DEFINE_integer("walk_steps", 9, "frames of the walk", lower_bound=2)
  flags.DEFINE_float("walk_max_degree", 10.0, "the walk spans [-max, +max]")
  flags.DEFINE_integer("gif_ms", 150, "GIF frame duration in ms")
  flags.DEFINE_enum("mask_convention", "known_is_white", list(image_io.MASK_CONVENTIONS),
                    "how mask files encode the hole (white = known is ours)")
  flags.DEFINE_boolean("resize_mask", False, "resize masks of another size to their image's "
                       "(nearest neighbour) instead of refusing them")
  flags.DEFINE_boolean("strict_mask", False, "refuse non-binary masks instead of thresholding "
                       "them at 0.5")
  flags.DEFINE_integer("batch_size", 8, "images per batch in folder mode")
  flags.DEFINE_boolean("skip_bad", False, "folder mode: report unusable images / masks and "
                       "go on with the rest instead of stopping")
  flags.DEFINE_enum("align", "auto", list(inputs_lib.ALIGN_MODES), "find the face (MTCNN) and "
                    "give the "
                    "model its FFHQ crop, pasting completions back into the photo: auto = for "
                    "images that are not a square of the model's size, falling back to a plain "
                    "resize when no face is found; on = a face is required; off = never")
  flags.DEFINE_integer("face", None, "with several faces in a photo: the one to inpaint (0 = "
                       "the largest; the message listing them gives the numbers)", lower_bound=0)
  flags.DEFINE_integer("refine_steps", 0, "not the paper: Adam steps fitting each input's W+ "
                       "codes to its known pixels before the edits (a closer style image; 50 "
                       "measured best on the toy faces, README)", lower_bound=0)
  flags.DEFINE_float("refine_lr", runtime.REFINE_LR, "Adam's learning rate for --refine_steps")
  cli.define_edit_flags("completions 1..K-1")
  cli.define_cache_flag()


def main(argv):
  from absl import app  # pylint: disable=import-outside-toplevel
  from absl import flags  # pylint: disable=import-outside-toplevel
  FLAGS = flags.FLAGS  # pylint: disable=invalid-name
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  for name in ("checkpoint", "image", "mask", "out"):
    if not FLAGS[name].value:
      raise app.UsageError(f"--{name} is required")
  cli.check_output_dir(FLAGS.out, "--out")   # first, before anything slow
  try:
    components = None if FLAGS.components is None else [int(c) for c in FLAGS.components]
    degrees = None if FLAGS.degrees is None else [float(d) for d in FLAGS.degrees]
    layers = None if FLAGS.layers is None else [int(l) for l in FLAGS.layers]
  except ValueError as e:
    raise cli.CliError("--components / --degrees / --layers must be comma-separated numbers "
                       f"({e})") from None
  flag, num = "--num_completions", FLAGS.num_completions
  if FLAGS.num is not None:
    print("warning: --num is deprecated; use --num_completions", file=sys.stderr)
    flag, num = "--num", FLAGS.num
  if components is not None:
    if FLAGS[flag[2:]].present and num != len(components) + 1:
      raise cli.CliError(f"{flag} {num} but --components names {len(components)} edits (K = "
                         f"{len(components) + 1}); drop {flag} or make them agree")
    num = len(components) + 1
  k = {"num": num} if flag == "--num" else {"num_completions": num}
  if FLAGS.skip_bad and not os.path.isdir(FLAGS.image):
    raise cli.CliError("--skip_bad is for folder mode (--image DIR); a single --image is "
                       "checked and refused on its own")
  written = run(FLAGS.checkpoint, FLAGS.image, FLAGS.mask, FLAGS.out, **k,
                components=components, degrees=degrees, degree=FLAGS.degree, layers=layers,
                walk=FLAGS.walk, walk_component=FLAGS.walk_component,
                walk_steps=FLAGS.walk_steps, walk_max_degree=FLAGS.walk_max_degree,
                gif_ms=FLAGS.gif_ms, mask_convention=FLAGS.mask_convention,
                resize_mask=FLAGS.resize_mask, strict_mask=FLAGS.strict_mask,
                batch_size=FLAGS.batch_size, skip_bad=FLAGS.skip_bad, align=FLAGS.align,
                face=FLAGS.face, compilation_cache=FLAGS.compilation_cache,
                refine_steps=FLAGS.refine_steps, refine_lr=FLAGS.refine_lr, edits=FLAGS.edits,
                edit_recognizer=FLAGS.edit_recognizer)
  for paths in written:
    print(f"{os.path.dirname(paths['grid'])}: {len(paths['completions'])} completions, grid.png"
          + (", aligned.png" if "aligned" in paths else "")
          + (", walk.png, walk.gif" if "walk" in paths else ""))
  return 0


if __name__ == "__main__":
  _define_flags()
  cli.run(main, user_errors=(ValueError, FileNotFoundError))
