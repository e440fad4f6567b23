"""``python -m difai_jax.fit_edits --checkpoint RUN [--out FILE]``: the attribute directions of
``Inpainter(edits="labelled")`` / ``inpaint --edits labelled`` for a DiFAI run (not the paper;
:mod:`difai_jax.labelled_edits`).

Fits the class means of the run's pSp codes over labelled toy train faces (their true labels;
faces 0 .. ``--num_faces`` - 1, never the test split) and each attribute's region, and writes
them to ``labelled_edits.npz`` in the run's ``difai`` stage folder (``--out`` elsewhere). The
shipped file (``difai_jax/assets/toy/difai/difai/labelled_edits.npz``) was written by

    python -m difai_jax.fit_edits --checkpoint toy-difai \
        --out difai_jax/assets/toy/difai/difai/labelled_edits.npz

Toy runs only: CelebA-HQ has no labels in this package (the directions would come from
CelebAMask-HQ's attribute file and a recognizer trained on it).
"""

import os
import time

from absl import app
from absl import flags

from difai_jax import cli
from difai_jax import labelled_edits as labelled_lib
from difai_jax.inference import model as model_lib
from difai_jax.training import checkpoints


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  if not f.checkpoint:
    raise app.UsageError("--checkpoint is required")
  info = model_lib.read_run_info(f.checkpoint)
  out = f.out or os.path.join(info.difai_dir, labelled_lib.FILE_NAME)
  if os.path.isdir(out) or not os.path.isdir(os.path.dirname(os.path.abspath(out))):
    raise cli.CliError(f"--out {out!r}: give a file path in an existing folder")
  inference = checkpoints.load_difai(f.checkpoint)
  if inference.config.data.source != "toy":
    raise cli.CliError(f"{f.checkpoint} was trained on {inference.config.data.source!r} faces; "
                       "fit_edits knows the labels of the toy faces only")
  attributes = tuple(a for a in f.attributes if a)
  print(f"fitting {len(attributes)} attribute directions on {f.num_faces} labelled toy train "
        "faces ...", flush=True)
  t0 = time.time()
  edits = labelled_lib.LabelledEdits.fit_toy(inference.models, inference.variables, attributes,
                                             num_faces=f.num_faces, min_count=f.min_count)
  edits.save(out)
  classes = ", ".join(f"{a} {len(m)}" for a, m in edits.means.items())
  print(f"wrote {out} ({time.time() - t0:.0f} s; classes: {classes})")
  return 0


if __name__ == "__main__":
  flags.DEFINE_string("checkpoint", None, "a trained DiFAI run (workdir or shipped short name)")
  flags.DEFINE_string("out", None, "the file to write (default: labelled_edits.npz in the "
                      "run's difai stage folder)")
  flags.DEFINE_list("attributes", list(labelled_lib.TOY_ATTRIBUTES), "the toy attributes the "
                    "edits may change")
  flags.DEFINE_integer("num_faces", 3000, "labelled train faces the class means average",
                       lower_bound=100)
  flags.DEFINE_integer("min_count", 30, "classes with fewer faces are left out", lower_bound=1)
  cli.run(main, user_errors=(FileNotFoundError, ValueError))
