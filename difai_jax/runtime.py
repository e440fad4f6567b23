"""What the library and the commands share at run time: user errors, output checks, the
persistent compilation cache and the ETA text.

The checks (:func:`check_output_dir`, :func:`check_output_file`) import nothing heavy, so a
command can call them before it imports JAX: a wrong ``--out`` is refused in the first second,
not after the models are loaded.
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from typing import Any

CACHE_ENV = "DIFAI_JAX_CACHE_DIR"
_OFF = ("", "none", "off")


# Adam's default learning rate for fitting pSp's codes to the known pixels
# (pipeline.fit_codes_to_known; the best of 0.01 / 0.03 on the toy faces: README).
REFINE_LR = 0.03

# Where the perturbed completions' edits come from: SeFa's directions (the paper) or the least
# labelled attribute edits a recognizer reads (difai_jax.labelled_edits, not the paper).
EDIT_SOURCES = ("sefa", "labelled")


def refine_problem(steps: int, lr: float, prefix: str = "--") -> str | None:
  """What is wrong with the settings of the codes' fitting (``steps`` Adam steps at rate ``lr``),
  named by ``prefix`` + ``refine_steps`` / ``refine_lr``, or None. Needs no JAX, so that the
  command lines refuse them before it loads."""
  if int(steps) >= 0 and float(lr) > 0:
    return None
  return (f"{prefix}refine_steps must be >= 0 and {prefix}refine_lr > 0; got {steps} and "
          f"{lr}")


class CliError(Exception):
  """A problem the user can fix; ``cli.run`` prints the message alone and exits 1."""


def deprecated_alias(value: Any, old_value: Any, old_name: str, default: Any,
                     new_name: str = "num_completions") -> Any:
  """``value``, or ``old_value`` given under its deprecated name ``old_name`` (with a
  DeprecationWarning; names kept for one release), else ``default``."""
  if old_value is not None:
    warnings.warn(f"{old_name} is deprecated; use {new_name}", DeprecationWarning, stacklevel=3)
    if value is not None and value != old_value:
      raise ValueError(f"{old_name}={old_value} and {new_name}={value} disagree; give "
                       f"{new_name} alone")
    value = old_value
  return default if value is None else value


def format_eta(seconds: float) -> str:
  """``1h02m03s``: the remaining time of a progress line."""
  seconds = int(max(seconds, 0))
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


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


def _absolute(path: str, flag: str, what: str) -> str:
  if not path:
    raise CliError(f"{flag} is empty; give an output {what}")
  return os.path.abspath(os.path.expanduser(path))


def check_output_dir(path: str, flag: str = "--out") -> str:
  """Refuses an output folder that cannot be created or written, before any work is done.

  Nothing is left behind: an existing folder gets a probe file that is removed at once; a
  missing one is checked at its nearest existing ancestor (where it would be created).

  Returns:
    The absolute path.

  Raises:
    CliError: one line naming ``flag``, the path and the reason.
  """
  full = _absolute(path, flag, "folder")
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
  full = _absolute(path, flag, "file")
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


def enable_compilation_cache(directory: str | None = None) -> str | None:
  """Turns on JAX's persistent compilation cache in ``directory``.

  Args:
    directory: the cache folder; None means :func:`default_cache_dir`; ``""``, ``"none"`` or
      ``"off"`` leave the cache off. A folder that cannot be written leaves it off with a note
      (a cache is never a reason to fail).

  Returns:
    The folder in use, or None. A ``JAX_COMPILATION_CACHE_DIR`` set by the user wins.
  """
  # JAX only here: the commands call the checks above before they import it.
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
