"""The inpaint command as a user meets it: wall time of each call, cold and with the cache.

  python -m benchmarks.cli_calls [--checkpoint toy-difai] [--num 4] [--write_results]

Each row is one fresh ``python -m difai_jax.inpaint`` process on one toy face (64 px) with a
square hole, timed from start to exit (imports, checkpoint load, compile or cache read, the
forward, writing PNGs), in this order:

1. a mask of the wrong size: refused before anything is loaded;
2. first call, compilation cache off (``--compilation_cache none``): what every call cost before
   the cache;
3. first call with an empty cache folder: compiles and fills the cache;
4. second call, same shapes: the executables come from the cache;
5. a third call, the same again (the spread of 4 and 5 is the machine's noise).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

from benchmarks import common

SECTION = "inpaint command: first and second call"


def _inputs(folder: str, size: int = 64) -> dict[str, str]:
  """A toy face, a mask with a centred square hole, and a mask of the wrong size."""
  from difai_jax.data.toy_faces import render_face  # pylint: disable=import-outside-toplevel
  paths = {k: os.path.join(folder, f"{k}.png") for k in ("face", "mask", "bad_mask")}
  Image.fromarray(render_face(0, 0, size)).save(paths["face"])
  mask = np.full((size, size), 255, np.uint8)          # white = known (the default convention)
  mask[size // 4:3 * size // 4, size // 4:3 * size // 4] = 0
  Image.fromarray(mask).save(paths["mask"])
  Image.fromarray(mask[: size // 2]).save(paths["bad_mask"])
  return paths


def _call(args: list[str]) -> tuple[float, int, str]:
  """Seconds, exit status and the last output line of one inpaint process."""
  t0 = time.perf_counter()
  done = subprocess.run([sys.executable, "-m", "difai_jax.inpaint", *args], capture_output=True,
                        text=True, check=False)
  seconds = time.perf_counter() - t0
  lines = (done.stdout + done.stderr).strip().splitlines()
  return seconds, done.returncode, lines[-1] if lines else ""


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.cli_calls",
                                   description=__doc__.split("\n", maxsplit=1)[0])
  parser.add_argument("--checkpoint", default="toy-difai")
  parser.add_argument("--num", type=int, default=4, help="K completions per call")
  parser.add_argument("--write_results", "--write-results", action="store_true")
  args = parser.parse_args(argv)

  with tempfile.TemporaryDirectory(prefix="difai_cli_calls_") as tmp:
    paths = _inputs(tmp)
    cache = os.path.join(tmp, "jax_cache")
    common_args = ["--checkpoint", args.checkpoint, "--image", paths["face"], "--num",
                   str(args.num), "--out", os.path.join(tmp, "out")]
    calls = [
        ("wrong mask size (refused)", ["--mask", paths["bad_mask"], "--compilation_cache",
                                       cache], False),
        ("first call, cache off", ["--mask", paths["mask"], "--compilation_cache", "none"],
         True),
        ("first call, empty cache", ["--mask", paths["mask"], "--compilation_cache", cache],
         True),
        ("second call, cache filled", ["--mask", paths["mask"], "--compilation_cache", cache],
         True),
        ("third call, cache filled", ["--mask", paths["mask"], "--compilation_cache", cache],
         True),
    ]
    rows = []
    for name, extra, should_pass in calls:
      seconds, status, last = _call(common_args + extra)
      print(f"{name}: {seconds:.1f} s, exit {status}: {last[:200]}", flush=True)
      if (status == 0) != should_pass:
        raise SystemExit(f"cli_calls: '{name}' exited with {status}: {last}")
      shown = last.replace(tmp, "TMP").replace("|", "/")
      rows.append((name, f"{seconds:.1f}", status, shown[:110]))
    cached = sum(len(files) for _, _, files in os.walk(cache))

  body = "\n".join([
      common.header(), "",
      f"`python -m benchmarks.cli_calls --checkpoint {args.checkpoint} --num {args.num}`: each "
      f"row is one fresh `python -m difai_jax.inpaint --checkpoint {args.checkpoint} --num "
      f"{args.num}` process on one 64 px toy face with a square hole, wall time from start to "
      "exit (imports, checkpoint, compile or cache read, the forward, PNGs). Inputs are checked "
      "before anything loads; the persistent compilation cache (default "
      "`~/.cache/difai_jax/jax_cache`, `--compilation_cache DIR|none`) holds the executables "
      f"of each shape ({cached} cache file(s) after these calls).", "",
      common.markdown_table(["call", "wall s", "exit", "last line"], rows, "lrrl")])
  common.publish(SECTION, body, args.write_results)
  return 0


if __name__ == "__main__":
  sys.exit(main())
