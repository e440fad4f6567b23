"""Helpers shared by the benchmark scripts: machine description, timing, tables, RESULTS.md.

Timing follows one rule everywhere: warm up (compile / first-touch) first, then time each call
separately, blocking on the result (``jax.block_until_ready``), and report the median. Where two
implementations are compared, their calls alternate in one loop, so that load from other
processes on a shared machine hits both sides alike.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import statistics
import time
from typing import Callable, Sequence

# Where --write_results writes: RESULTS.md beside this file, or $DIFAI_BENCH_RESULTS
# (benchmarks/device_suite.sh collects the sections of one machine's run in a file of its own).
RESULTS = (os.environ.get("DIFAI_BENCH_RESULTS")
           or os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md"))


def cpu_model() -> str:
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown CPU"


def load_average() -> str:
  try:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())
  except OSError:
    return "n/a"


def machine() -> str:
  """One line: CPU model, visible cores, accelerator (if any), Python and JAX versions."""
  import jax  # pylint: disable=import-outside-toplevel
  dev = jax.devices()[0]
  accel = "" if dev.platform == "cpu" else f", {jax.device_count()} x {dev.device_kind}"
  return (f"{cpu_model()}, {os.cpu_count()} cores visible{accel}, Python "
          f"{platform.python_version()}, jax {jax.__version__}")


def header() -> str:
  """The line each RESULTS.md section starts with: date, machine and load at measuring time."""
  return (f"Measured {datetime.date.today().isoformat()} on {machine()}; load average "
          f"(1/5/15 min) at the end of the run: {load_average()}.")


def time_calls(fns: Sequence[Callable[[], object]], iters: int, warmup: int = 1
               ) -> list[list[float]]:
  """Seconds per call of each ``fn`` (each must block until its result is ready).

  The functions alternate inside one loop (fn0, fn1, fn0, fn1, ...) after ``warmup`` untimed
  calls each. Returns one list of ``iters`` timings per function.
  """
  for fn in fns:
    for _ in range(warmup):
      fn()
  times: list[list[float]] = [[] for _ in fns]
  for _ in range(iters):
    for i, fn in enumerate(fns):
      t0 = time.perf_counter()
      fn()
      times[i].append(time.perf_counter() - t0)
  return times


def median(xs: Sequence[float]) -> float:
  return statistics.median(xs)


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[object]],
                   align: str | None = None) -> str:
  """A GitHub table; ``align`` is one character per column, 'l' or 'r' (default: 'l' then 'r')."""
  align = align or "l" + "r" * (len(columns) - 1)
  sep = ["---" if a == "l" else "---:" for a in align]
  lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(sep) + "|"]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
  return "\n".join(lines)


def write_section(title: str, body: str, path: str = RESULTS) -> None:
  """Replaces (or appends) the ``## title`` section of RESULTS.md, keeping every other one."""
  section = f"## {title}"
  text = open(path, encoding="utf-8").read() if os.path.exists(path) else "# Benchmarks\n"
  block = f"{section}\n\n{body.strip()}\n"
  pattern = re.compile(rf"^{re.escape(section)}\n.*?(?=^## |\Z)", re.S | re.M)
  if pattern.search(text):
    text = pattern.sub(lambda _: block + "\n", text).rstrip() + "\n"
  else:
    text = text.rstrip() + "\n\n" + block
  with open(path, "w", encoding="utf-8") as f:
    f.write(text)


def publish(title: str, body: str, write: bool) -> None:
  """Prints a benchmark's section and, with ``--write_results``, puts it in RESULTS.md."""
  print(body)
  if write:
    write_section(title, body)


def fmt(x: float, digits: int = 3) -> str:
  """Compact number formatting for tables (3 significant digits by default)."""
  if x != x:  # NaN
    return "n/a"
  return f"{x:.{digits}g}" if abs(x) < 10 ** digits else f"{x:,.0f}"
