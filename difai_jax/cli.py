"""What every command-line tool shares: one-line errors, a quiet start, ``--help``, early output
checks and JAX's persistent compilation cache.

Each ``python -m difai_jax.<tool>`` ends with ``cli.run(main)`` in place of ``absl.app.run(main)``:

  * an expected error (:class:`CliError`, or the types a tool names) prints ``error: <message>``
    on stderr and exits 1, without a traceback;
  * ``--help`` / ``--helpfull`` exit 0 (absl exits 1 after printing the usage);
  * the start-up chatter of the libraries stays out of the output unless ``--verbosity`` (``-v``)
    asks for it: orbax's INFO logs, jax's "Unable to initialize backend 'tpu'" line and the C++
    INFO / WARNING lines of XLA and TensorFlow (``TF_CPP_MIN_LOG_LEVEL=2`` unless already set).

The checks (:func:`check_output_dir`, :func:`check_output_file`) and the cache
(:func:`enable_compilation_cache`) import nothing heavy, so a tool can call them before it
imports JAX: a wrong ``--out`` is refused in the first second, not after the models are loaded.
"""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Callable, Sequence

from absl import app
from absl import flags
from absl import logging

CACHE_ENV = "DIFAI_JAX_CACHE_DIR"
_OFF = ("", "none", "off")


class CliError(Exception):
  """A problem the user can fix; :func:`run` prints the message alone and exits 1."""


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


# ----------------------------------------------------------------------------------------------
# Outputs, checked before the work
# ----------------------------------------------------------------------------------------------

def _first_existing(path: str) -> str:
  """``path`` or its nearest existing ancestor."""
  current = path
  while not os.path.lexists(current):
    parent = os.path.dirname(current)
    if parent == current:
      break
    current = parent
  return current


def _probe_writable(folder: str) -> str | None:
  """None if a file can be created in ``folder`` (and is removed again), else the OS reason."""
  try:
    fd, probe = tempfile.mkstemp(prefix=".difai_write_test_", dir=folder)
  except OSError as e:
    return e.strerror or type(e).__name__
  os.close(fd)
  os.remove(probe)
  return None


def _refuse_unless_creatable(full: str, flag: str, path: str) -> None:
  """Raises CliError unless ``full`` (a folder, existing or not) can hold new files."""
  existing = _first_existing(full)
  if not os.path.isdir(existing):
    raise CliError(f"{flag} {path} cannot be created: {existing} is a file, not a folder")
  reason = _probe_writable(existing)
  if reason is not None:
    where = "" if existing == full else f" (in {existing}, where it would be created)"
    raise CliError(f"{flag} {path} cannot be written{where}: {reason}")


def check_output_dir(path: str, flag: str = "--out") -> str:
  """Refuses an output folder that cannot be created or written, before any work is done.

  Nothing is left behind: an existing folder gets a probe file that is removed at once; a
  missing one is checked at its nearest existing ancestor (where it would be created).

  Returns:
    The absolute path.

  Raises:
    CliError: one line naming ``flag``, the path and the reason.
  """
  if not path:
    raise CliError(f"{flag} is empty; give an output folder")
  full = os.path.abspath(os.path.expanduser(path))
  if os.path.lexists(full) and not os.path.isdir(full):
    raise CliError(f"{flag} {path} is a file, not a folder")
  _refuse_unless_creatable(full, flag, path)
  return full


def check_output_file(path: str, flag: str = "--out") -> str:
  """Refuses an output file that is a folder or whose folder cannot be created or written.

  Returns:
    The absolute path.

  Raises:
    CliError: one line naming ``flag``, the path and the reason.
  """
  if not path:
    raise CliError(f"{flag} is empty; give an output file")
  full = os.path.abspath(os.path.expanduser(path))
  if os.path.isdir(full):
    raise CliError(f"{flag} {path} is a folder; give a file name (e.g. {path}/out.png)")
  _refuse_unless_creatable(os.path.dirname(full), flag, path)
  return full


# ----------------------------------------------------------------------------------------------
# The persistent compilation cache
# ----------------------------------------------------------------------------------------------

def default_cache_dir() -> str:
  """``$DIFAI_JAX_CACHE_DIR``, else ``$XDG_CACHE_HOME/difai_jax/jax_cache`` (~/.cache/...)."""
  if CACHE_ENV in os.environ:
    return os.environ[CACHE_ENV]
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "difai_jax", "jax_cache")


def define_cache_flag() -> None:
  """``--compilation_cache DIR`` for a tool that compiles ('none' turns the cache off); once
  per process, however many tools a process imports (a test session imports them all)."""
  if "compilation_cache" in flags.FLAGS:
    return
  flags.DEFINE_string(
      "compilation_cache", None,
      f"JAX's persistent compilation cache: a second run of the same shapes skips compiling "
      f"(default: ${CACHE_ENV}, else ~/.cache/difai_jax/jax_cache; 'none' turns it off)")


def enable_compilation_cache(directory: str | None = None) -> str | None:
  """Turns on JAX's persistent compilation cache in ``directory``.

  Args:
    directory: the cache folder; None means :func:`default_cache_dir`; ``""``, ``"none"`` or
      ``"off"`` leave the cache off. A folder that cannot be written leaves it off with a note
      (a cache is never a reason to fail).

  Returns:
    The folder in use, or None. A ``JAX_COMPILATION_CACHE_DIR`` set by the user wins.
  """
  import jax  # pylint: disable=import-outside-toplevel
  if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    return os.environ["JAX_COMPILATION_CACHE_DIR"]
  directory = default_cache_dir() if directory is None else directory
  if directory.strip().lower() in _OFF:
    return None
  directory = os.path.abspath(os.path.expanduser(directory))
  try:
    os.makedirs(directory, exist_ok=True)
    reason = _probe_writable(directory)
  except OSError as e:
    reason = e.strerror or type(e).__name__
  if reason is not None:
    print(f"note: compilation cache {directory} is not writable ({reason}); compiling without "
          "it", file=sys.stderr)
    return None
  jax.config.update("jax_compilation_cache_dir", directory)
  # Cache everything that took noticeable time to compile; the default (1 s) misses the
  # smaller programs of a tool run whose sum is what a user waits for.
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
  return directory
