"""``python -m difai_jax.export --workdir RUN --out DIR``: a trained stage as a converted model
directory (``pretrained.load`` reads it), or a DiFAI run as its inference-only copy; see
:mod:`difai_jax.training.export`.
"""

from absl import app
from absl import flags

from difai_jax import cli
from difai_jax.training import export


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  if not f.workdir or not f.out:
    raise app.UsageError("--workdir and --out are required")
  config = export.export(f.workdir, f.out, use_ema=not f.raw, psp=f.psp, coarse=f.coarse)
  print(f"wrote {config['kind']} to {f.out}")


if __name__ == "__main__":
  # Flags are defined only when run as a command: train.py (imported beside this module in
  # tests) defines its own --workdir.
  flags.DEFINE_string("workdir", None, "a training stage's workdir")
  flags.DEFINE_string("out", None, "new directory for the converted model")
  flags.DEFINE_bool("raw", False, "export the trained weights instead of their EMA")
  flags.DEFINE_string("psp", None, "DiFAI runs: the pSp the exported copy names (a shipped "
                      "short name such as toy-psp, or a directory), instead of the run's "
                      "pretrained.psp path; it must decode with the same StyleGAN2 (checked), "
                      "its encoder may be another (recorded as psp_trained_with)")
  flags.DEFINE_string("coarse", None, "DiFAI runs: a coarse-stage workdir (or a DiFAI run "
                      "holding one) whose coarse net, with its own architecture, replaces the "
                      "run's in the exported copy")
  cli.run(main, user_errors=(FileNotFoundError, FileExistsError, ValueError))
