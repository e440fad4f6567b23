"""The child process of ``test_hostile_files``: reads weight files, one forked process per case.

Run as ``python -m tests.hostile_child nvidia|torch`` from the repository root. It reads cases
from stdin, one JSON object a line::

    {"path": FILE, "what": "load" | "convert", "edits": [...], "limit": BYTES, "timeout": S}

and answers each with one JSON line: ``outcome`` is ``ok``, ``refused`` (a ConversionError,
with its ``message``), ``error`` (any other exception, with its traceback), ``signal`` (the case
died: a crash, or SIGALRM after ``timeout`` seconds: a hang) or ``no report``; ``peak`` is the
growth of the case's peak RSS in bytes; ``modules`` lists torch / jax if they were imported.

Each case runs in a process forked from this one (cheap: the reader is imported once), with an
alarm and, where ``limit`` is given, an address-space limit (``RLIMIT_AS``) of ``limit`` bytes
above what the process maps when the case starts. ``nvidia`` mode imports numpy and the NVIDIA
reader only (jax's and torch's imports reserve far more address space than such a limit
allows); ``torch`` mode imports torch and measures the peak RSS instead.

``edits`` (fuzzing) change the file's bytes before it is read, in order: ``["replace", pos,
hex]``, ``["insert", pos, start, end]`` (a copy of bytes ``start:end``), ``["delete", pos, n]``,
``["truncate", n]``.
"""

import json
import os
import resource
import signal
import sys
import tempfile
import traceback

MODE = sys.argv[1] if __name__ == "__main__" else "nvidia"
if MODE == "torch":
  import torch  # noqa: F401  # pylint: disable=unused-import
  from weights_conversion import torch_io
else:
  from weights_conversion import nvidia_pickle
  from weights_conversion import nvidia_stylegan2
from weights_conversion.torch_io import ConversionError


def _status(key: str) -> int:
  """A ``/proc/self/status`` field (VmRSS, VmHWM, VmSize) in bytes."""
  with open("/proc/self/status", encoding="ascii") as f:
    for line in f:
      if line.startswith(key + ":"):
        return int(line.split()[1]) * 1024
  raise KeyError(key)


def mutate(data: bytes, edits: list) -> bytes:
  """Applies ``edits`` (see the module docstring) to ``data``."""
  out = bytearray(data)
  for edit in edits:
    kind, args = edit[0], edit[1:]
    if kind == "replace":
      pos, new = args[0], bytes.fromhex(args[1])
      out[pos:pos + len(new)] = new
    elif kind == "insert":
      pos, start, end = args
      out[pos:pos] = out[start:end]
    elif kind == "delete":
      pos, n = args
      del out[pos:pos + n]
    elif kind == "truncate":
      del out[args[0]:]
    else:
      raise ValueError(f"unknown edit {kind}")
  return bytes(out)


def _work(case: dict, path: str) -> dict:
  """Reads ``path`` as the case asks; returns a summary of what was read."""
  if MODE == "torch":
    return {"entries": len(torch_io.load_checkpoint(path))}
  if case.get("what") == "load":
    obj = nvidia_pickle.load(path)
    if isinstance(obj, nvidia_pickle.PersistentObject):   # a bare network: its tensors
      return {"tensors": len(nvidia_pickle.load_network(path)[1])}
    return {"type": type(obj).__name__}
  config, variables = nvidia_stylegan2.convert_pickle(path, check=False)
  return {"size": config["size"], "params": len(variables["params"])}


def _reset_peak() -> None:
  """Starts the peak RSS (VmHWM) afresh at the current RSS (Linux >= 4.0)."""
  with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
    f.write("5")


def _case(case: dict, report: int) -> None:
  """Runs one case in this (forked) process and writes its JSON result to ``report``."""
  path = case["path"]
  if case.get("edits"):
    with open(path, "rb") as f:
      data = mutate(f.read(), case["edits"])
    path = os.path.join(tempfile.gettempdir(), f"hostile_case_{os.getpid()}.bin")
    with open(path, "wb") as f:
      f.write(data)
  _reset_peak()
  base = _status("VmRSS")
  if case.get("limit"):
    limit = _status("VmSize") + case["limit"]
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
  signal.alarm(case.get("timeout", 20))
  try:
    result = {"outcome": "ok", **_work(case, path)}
  except ConversionError as e:
    result = {"outcome": "refused", "type": type(e).__name__, "message": str(e)}
  except BaseException as e:  # pylint: disable=broad-except  # what the test must catch
    result = {"outcome": "error", "type": type(e).__name__,
              "message": traceback.format_exc()[-3000:]}
  signal.alarm(0)
  result["peak"] = _status("VmHWM") - base
  result["modules"] = sorted(m for m in ("torch", "jax") if m in sys.modules)
  if path != case["path"]:
    os.remove(path)
  os.write(report, json.dumps(result).encode())


def _run(case: dict) -> dict:
  """Forks a process for ``case`` and waits for it; a process that dies says how."""
  read_end, write_end = os.pipe()
  pid = os.fork()
  if pid == 0:
    os.close(read_end)
    try:
      _case(case, write_end)
    finally:
      os._exit(0)  # pylint: disable=protected-access
  os.close(write_end)
  chunks = []
  while chunk := os.read(read_end, 1 << 16):
    chunks.append(chunk)
  os.close(read_end)
  _, status = os.waitpid(pid, 0)
  if os.WIFSIGNALED(status):
    return {"outcome": "signal", "signal": os.WTERMSIG(status)}
  if not chunks:
    return {"outcome": "no report", "status": status}
  return json.loads(b"".join(chunks))


def main() -> None:
  for line in sys.stdin:
    print(json.dumps(_run(json.loads(line))), flush=True)


if __name__ == "__main__":
  main()
