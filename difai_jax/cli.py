"""What every command-line tool shares: one-line errors, a quiet start, ``--help``, early output
checks and JAX's persistent compilation cache.

Each ``python -m difai_jax.<tool>`` ends with ``cli.run(main)`` in place of ``absl.app.run(main)``:

  * an expected error (:class:`CliError`, or the types a tool names) prints ``error: <message>``
    on stderr and exits 1, without a traceback;
  * ``--help`` / ``--helpfull`` exit 0 (absl exits 1 after printing the usage);
  * the start-up chatter of the libraries stays out of the output unless ``--verbosity`` (``-v``)
    asks for it: orbax's INFO logs, jax's "Unable to initialize backend 'tpu'" line and the C++
    INFO / WARNING lines of XLA and TensorFlow (``TF_CPP_MIN_LOG_LEVEL=2`` unless already set).

The output checks and the compilation cache are :mod:`difai_jax.runtime`'s (the library uses
them too); they are re-exported here for the commands.
"""

from __future__ import annotations

import os
import sys
from typing import Callable, Sequence

from absl import app
from absl import flags
from absl import logging

from difai_jax.runtime import CACHE_ENV
from difai_jax.runtime import check_output_dir
from difai_jax.runtime import check_output_file
from difai_jax.runtime import CliError
from difai_jax.runtime import EDIT_SOURCES
from difai_jax.runtime import default_cache_dir
from difai_jax.runtime import enable_compilation_cache

__all__ = ["CACHE_ENV", "CliError", "check_output_dir", "check_output_file", "default_cache_dir",
           "define_cache_flag", "enable_compilation_cache", "quiet_logs", "run",
           "verbosity_requested"]


# ----------------------------------------------------------------------------------------------
# Running a tool
# ----------------------------------------------------------------------------------------------

def verbosity_requested(argv: Sequence[str]) -> bool:
  """Whether the command line sets absl's ``--verbosity`` (or ``-v``)."""
  return any(a in ("-v", "--verbosity") or a.startswith(("-v=", "--verbosity="))
             for a in argv)


def quiet_logs(argv: Sequence[str] | None = None) -> bool:
  """Keeps library chatter out of a tool's output unless ``--verbosity`` was given.

  Call before the libraries log (``run`` does). Returns whether it quietened anything.
  """
  argv = sys.argv[1:] if argv is None else argv
  if verbosity_requested(argv):
    return False
  # Read by XLA's and TensorFlow's C++ logging when they first log (after this call).
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  # orbax's chatter and jax's "Unable to initialize backend 'tpu'" are INFO records; warnings
  # (e.g. "A Google TPU may be present on this machine, but ...") still show.
  logging.set_verbosity(logging.WARNING)
  return True


def _help_exits_zero() -> None:
  """After a usage printed on request (``--help``, ``--helpfull``), exit 0, not absl's 1.

  absl's help flags print the usage and then exit through ``app._exit_before_main(1)``, a hook
  absl keeps "to enable overrides"; flag errors exit through it too, and keep their status 1.
  """
  exit_before_main = getattr(app, "_exit_before_main", None)
  if exit_before_main is None or getattr(exit_before_main, "difai_jax", False):
    return
  usage, shown = app.usage, []

  def usage_on_request(*args, **kwargs):
    shown.append(True)
    return usage(*args, **kwargs)

  def exit_zero_after_help(status):
    exit_before_main(0 if shown else status)

  exit_zero_after_help.difai_jax = True
  app.usage = usage_on_request
  app._exit_before_main = exit_zero_after_help  # pylint: disable=protected-access


def run(main: Callable[[list[str]], int | None],
        user_errors: tuple[type[BaseException], ...] = ()) -> None:
  """``absl.app.run(main)`` with the behaviour every tool shares (see the module docstring).

  Args:
    main: the tool's ``main(argv)``; its return value is the exit status.
    user_errors: exception types that carry a message for the user (besides :class:`CliError`):
      printed as ``error: <message>`` with exit status 1, no traceback.
  """
  expected = (CliError,) + tuple(user_errors)
  quiet = quiet_logs()

  def wrapped(argv):
    if quiet:
      logging.set_verbosity(logging.WARNING)   # absl sets INFO when --verbosity is absent
    try:
      return main(argv)
    except expected as e:
      print(f"error: {e}", file=sys.stderr)
      return 1

  _help_exits_zero()
  app.run(wrapped)


def define_edit_flags(where: str) -> None:
  """``--edits`` and ``--edit_recognizer`` of a tool that inpaints; ``where`` names the
  completions the edits make (e.g. "completions 1..K-1")."""
  flags.DEFINE_enum("edits", "sefa", list(EDIT_SOURCES), f"where {where} come from: SeFa "
                    "directions (the paper) or, not the paper, the least labelled attribute "
                    "edits a recognizer reads (the run's labelled_edits.npz; python -m "
                    "difai_jax.fit_edits)")
  flags.DEFINE_string("edit_recognizer", "toy-recognizer", "--edits labelled: the recognizer "
                      "the search reads (a directory or short name, or several comma-separated "
                      "read as one: their mean probabilities; never the toy judge)")


def define_cache_flag() -> None:
  """``--compilation_cache DIR`` for a tool that compiles ('none' turns the cache off); once
  per process, however many tools a process imports (a test session imports them all)."""
  if "compilation_cache" in flags.FLAGS:
    return
  flags.DEFINE_string(
      "compilation_cache", None,
      f"JAX's persistent compilation cache: a second run of the same shapes skips compiling "
      f"(default: ${CACHE_ENV}, else ~/.cache/difai_jax/jax_cache; 'none' turns it off)")
