"""Peak FLOP/s of common accelerators (vendor datasheets, dense, no sparsity) and of this CPU.

MFU divides the achieved FLOP/s (XLA's cost-analysis FLOPs / step time) by the peak for the
precision the step computes in. DiFAI's configs compute in float32; on GPUs XLA runs float32
matmuls / convs at default precision on TF32 tensor cores, so the TF32 column is the relevant
peak there; TPUs run float32 at default precision through bf16 passes, so the bf16 column is.

CPU: no datasheet number for a VM, so the peak is estimated from /proc/cpuinfo as
cores x clock x float32 FLOPs per cycle per core, with 2 FMA units per core (Xeon Gold /
Platinum and recent desktop cores): AVX-512 -> 2 x 16 lanes x 2 = 64, AVX2/FMA -> 2 x 8 x 2 = 32,
otherwise SSE 2 x 4 x 2 = 16. Turbo clocks are ignored (the reported clock is used).

  python -m benchmarks.peaks        # prints the table and this machine's estimate
"""

from __future__ import annotations

import os

# device_kind substring -> (float32 (non tensor core), TF32 or bf16 for float32 matmuls, bf16)
# in TFLOP/s, dense.
PEAKS_TFLOPS = {
    "H200": (67.0, 494.7, 989.4),
    "H100": (67.0, 494.7, 989.4),          # SXM; PCIe: 51 / 378 / 756
    "A100": (19.5, 156.0, 312.0),
    "L4": (30.3, 60.0, 121.0),
    "A10": (31.2, 62.5, 125.0),
    "V100": (15.7, 15.7, 125.0),           # no TF32 / bf16: fp16 tensor cores in the last column
    "T4": (8.1, 8.1, 65.0),                # fp16 tensor cores
    "TPU v6": (None, 918.0, 918.0),        # v6e (Trillium)
    "TPU v5p": (None, 459.0, 459.0),
    "TPU v5 lite": (None, 197.0, 197.0),   # v5e
    "TPU v5e": (None, 197.0, 197.0),
    "TPU v4": (None, 275.0, 275.0),
    "TPU v3": (None, 123.0, 123.0),
    "TPU v2": (None, 45.0, 45.0),
}


def cpu_peak_flops() -> tuple[float, str]:
  """(float32 FLOP/s, how it was estimated) for this machine's CPU."""
  flags, mhz = set(), 0.0
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("flags") and not flags:
          flags = set(line.split(":", 1)[1].split())
        elif line.startswith("cpu MHz") and not mhz:
          mhz = float(line.split(":", 1)[1])
  except OSError:
    pass
  mhz = mhz or 2000.0
  if "avx512f" in flags:
    per_cycle, isa = 64, "AVX-512"
  elif "avx2" in flags and "fma" in flags:
    per_cycle, isa = 32, "AVX2+FMA"
  else:
    per_cycle, isa = 16, "SSE"
  cores = os.cpu_count() or 1
  peak = cores * mhz * 1e6 * per_cycle
  return peak, (f"CPU estimate {cores} cores x {mhz / 1000:.2f} GHz x {per_cycle} fp32 FLOP/cycle "
                f"({isa}, 2 FMA units)")


# What a step computes in -> the column of PEAKS_TFLOPS it is compared with.
COMPUTE = {"float32": 0, "float32_matmul": 1, "bfloat16": 2}


def compute_kind(policy: str, dtype: str) -> str:
  """The ``COMPUTE`` key of a run: ``dtype`` 'bfloat16' -> bfloat16; float32 with the
  'highest' / 'float32' matmul policy -> plain float32; else the fast float32 matmuls."""
  if dtype == "bfloat16":
    return "bfloat16"
  return "float32" if policy in ("highest", "float32") else "float32_matmul"


def device_peak_flops(compute: str = "float32_matmul") -> tuple[float, str]:
  """(peak FLOP/s, description) for the default device (all local devices together).

  ``compute``: a ``COMPUTE`` key, the column of the table to use (the CPU estimate is the same
  for all three).
  """
  import jax  # pylint: disable=import-outside-toplevel
  dev = jax.devices()[0]
  if dev.platform == "cpu":
    return cpu_peak_flops()
  kind = dev.device_kind
  for name, peaks in PEAKS_TFLOPS.items():
    if name.lower() in kind.lower():
      peak = peaks[COMPUTE[compute]]
      if peak is None:        # TPUs have no separate float32 unit: float32 runs as bf16 passes
        peak = peaks[COMPUTE["float32_matmul"]]
      n = jax.local_device_count()
      return n * peak * 1e12, f"{n} x {kind}, {peak:g} TFLOP/s {compute} peak"
  return float("nan"), f"{kind}: not in benchmarks/peaks.py (add its datasheet peak)"


def table() -> str:
  from benchmarks import common  # pylint: disable=import-outside-toplevel
  rows = [(name, "n/a" if a is None else f"{a:g}", f"{b:g}", f"{c:g}")
          for name, (a, b, c) in PEAKS_TFLOPS.items()]
  peak, text = cpu_peak_flops()
  rows.append(("this CPU", f"{peak / 1e12:.3g}", "-", "-"))
  return (common.markdown_table(["device", "fp32 TFLOP/s", "fp32 matmul (TF32 / bf16 passes)",
                                 "bf16 / fp16 TFLOP/s"], rows) + f"\n\nthis CPU: {text}.")


if __name__ == "__main__":
  print(table())
