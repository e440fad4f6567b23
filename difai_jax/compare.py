"""Several evaluations side by side: ``python -m difai_jax.compare --eval_dirs A,B,C``.

Reads the ``results.json`` that ``difai_jax.evaluate`` wrote in each directory (no network is
loaded) and prints one Markdown table, a row per (bucket, metric) and per run two columns: ours
and the paper's number for that run's variant (DiFAI's Tables 1-2, or its Table 3 row for the
``generator.norm=spade`` / ``batch`` ablations). This is Table 3's layout:

    python -m difai_jax.compare --eval_dirs runs/sparn/eval,runs/spade/eval,runs/batch/eval \
        --names DiFAI,SPADE,batch --buckets quickdraw --out runs/table3

``--out`` also writes ``compare.{md,csv,json}`` there. Runs measured under different protocols
(K, images, readings, metric weights) are compared anyway, with a note saying what differs.
The work is :func:`difai_jax.evaluation.comparison.run`.
"""

from __future__ import annotations

from difai_jax import cli
from difai_jax.evaluation import comparison


def main(argv):
  from absl import flags  # pylint: disable=import-outside-toplevel
  FLAGS = flags.FLAGS  # pylint: disable=invalid-name
  if len(argv) > 1 or not FLAGS.eval_dirs:
    raise cli.CliError("usage: python -m difai_jax.compare --eval_dirs A,B[,...] [--names ...] "
                       "[--buckets ...] [--out DIR]")
  if FLAGS.out:
    cli.check_output_dir(FLAGS.out, "--out")
  comparison.run(FLAGS.eval_dirs, FLAGS.names, FLAGS.buckets, FLAGS.out)
  return 0


if __name__ == "__main__":
  from absl import flags as _flags  # pylint: disable=g-import-not-at-top
  _flags.DEFINE_list("eval_dirs", None, "evaluation directories (each with results.json)")
  _flags.DEFINE_list("names", None, "column names, one per directory (default: each run's "
                     "generator.norm, or the method of a scored completions folder)")
  _flags.DEFINE_list("buckets", None, "buckets to show (default: those all runs have)")
  _flags.DEFINE_string("out", None, "also write compare.{md,csv,json} here")
  cli.run(main, user_errors=(ValueError, FileNotFoundError))
