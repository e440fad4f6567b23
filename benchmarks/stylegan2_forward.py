"""StyleGAN2 generator forward: our jitted Flax model against rosinality's PyTorch original.

  python -m benchmarks.stylegan2_forward --torch-repo /path/to/stylegan2-pytorch \
      [--sizes 256,1024] [--batches 1,4] [--iters 5] [--quick] [--write_results] \
      [--profile DIR]

Both sides run config-f (style_dim 512, 8 mapping layers, channel multiplier 2) from the SAME
weights: the PyTorch Generator is built with random weights (seeded), its state dict is saved to
a temporary .pt and converted with ``weights_conversion.stylegan2`` (the path users take). Each
cell maps z -> image with the stored noise buffers (``randomize_noise=False`` on both sides, so
the outputs are comparable) and prints the max abs difference of the two images.

The PyTorch side is imported from the checkout passed with ``--torch-repo`` (nothing of it lives
in this repository). Its ``op/`` package compiles CUDA extensions at import; on a CPU-only machine
the compile fails, so this script lends ``torch.utils.cpp_extension.load`` a stub while importing
it: on CPU tensors rosinality's code never calls the extensions and takes its own pure-PyTorch
paths (``upfirdn2d_native``, ``F.leaky_relu`` fused-bias fallback, ``F.conv2d`` /
``F.conv_transpose2d`` in ``conv2d_gradfix``). On a GPU machine the stub is not installed and the
extensions build as usual.

Timing: ``torch.inference_mode()`` with ``torch.set_num_threads(os.cpu_count())`` against
``jax.jit`` (XLA:CPU uses every core); one warm-up call each, then ``--iters`` calls alternating
PyTorch / JAX (so background load hits both), median seconds per call -> images/s and the ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common

SECTION = "StyleGAN2 generator forward (Flax vs PyTorch original)"


class _NoExtension:
  """Stands in for a compiled op module; fails loudly if the PyTorch code ever calls it."""

  def __init__(self, name):
    self._name = name

  def __getattr__(self, attr):
    raise RuntimeError(f"the CUDA extension {self._name!r} was stubbed out by the benchmark "
                       f"(CPU run) but rosinality's code called {attr!r}")


@contextlib.contextmanager
def _cpu_extension_stub(enabled: bool):
  import torch.utils.cpp_extension as ext  # pylint: disable=import-outside-toplevel
  original = ext.load
  if enabled:
    ext.load = lambda name, *args, **kwargs: _NoExtension(name)
  try:
    yield
  finally:
    ext.load = original


def import_rosinality(repo: str, device: str):
  """rosinality's ``model`` module from the checkout at ``repo``."""
  repo = os.path.abspath(repo)
  if not os.path.isfile(os.path.join(repo, "model.py")) or not os.path.isdir(
      os.path.join(repo, "op")):
    raise FileNotFoundError(f"--torch-repo {repo} is not a rosinality/stylegan2-pytorch "
                            "checkout (needs model.py and op/)")
  sys.path.insert(0, repo)
  try:
    with _cpu_extension_stub(device == "cpu"):
      return importlib.import_module("model")
  finally:
    sys.path.remove(repo)


def build_pair(rosinality, size: int, seed: int, device):
  """(torch generator, flax module, flax variables) with the same random config-f weights."""
  import torch  # pylint: disable=import-outside-toplevel
  from difai_jax.models import stylegan2  # pylint: disable=import-outside-toplevel
  from weights_conversion import stylegan2 as convert  # pylint: disable=import-outside-toplevel
  from weights_conversion import torch_io  # pylint: disable=import-outside-toplevel
  torch.manual_seed(seed)
  g = rosinality.Generator(size, 512, 8, channel_multiplier=2).eval()
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "g_ema.pt")
    torch.save({"g_ema": g.state_dict()}, path)
    sd = torch_io.StateDict(convert.select_generator(torch_io.load_checkpoint(path)),
                            source=path)
    config, variables = convert.convert_generator(sd)
  module = stylegan2.from_config(config)
  variables = jax.device_put(jax.tree.map(jnp.asarray, variables))
  return g.to(device), module, variables


def load_alternative_stylegan2(layers_path: str):
  """A copy of ``difai_jax.models.stylegan2`` bound to another ``layers.py`` (e.g. the version
  before an optimisation, ``git show REV:difai_jax/nn/layers.py > /tmp/layers_old.py``)."""
  import importlib.util  # pylint: disable=import-outside-toplevel
  from difai_jax.models import stylegan2  # pylint: disable=import-outside-toplevel

  def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module            # flax's dataclass transform looks the module up
    spec.loader.exec_module(module)
    return module

  alt = load("stylegan2_alternative", stylegan2.__file__)
  alt.layers = load("layers_alternative", layers_path)   # looked up at call time
  return alt


def run_cell(rosinality, size, batch, iters, seed, device, profile_dir=None, alternative=None):
  """Times one (size, batch) cell; returns medians / minima and the output differences."""
  import torch  # pylint: disable=import-outside-toplevel
  g, module, variables = build_pair(rosinality, size, seed, device)
  z = np.random.default_rng(seed).standard_normal((batch, 512)).astype(np.float32)
  z_torch = torch.from_numpy(z).to(device)
  z_jax = jax.device_put(jnp.asarray(z))

  def run_torch():
    with torch.inference_mode():
      out = g([z_torch], randomize_noise=False)[0]
    if device != "cpu":
      torch.cuda.synchronize()
    return out

  # The first call of each side doubles as its warm-up (JAX: compile + run).
  out_torch = run_torch().cpu().numpy().transpose(0, 2, 3, 1)
  variants = {"jax": module}
  if alternative is not None:
    variants["jax_alt"] = alternative.from_config(dict(
        size=module.size, style_dim=module.style_dim, n_mlp=module.n_mlp,
        channels=module.channels, blur_kernel=module.blur_kernel, lr_mlp=module.lr_mlp))
  runs, result = [run_torch], {"size": size, "batch": batch}
  for name, m in variants.items():
    forward = jax.jit(lambda v, z, m=m: m.apply(v, [z]))
    run = lambda f=forward: jax.block_until_ready(f(variables, z_jax))
    t0 = time.perf_counter()
    out = run()
    result[f"{name}_compile_s"] = time.perf_counter() - t0
    result[f"{name}_diff"] = float(np.abs(np.asarray(out) - out_torch).max())
    result[f"{name}_forward"] = forward
    runs.append(run)
  times = common.time_calls(runs, iters=iters, warmup=0)
  for name, ts in zip(["torch"] + list(variants), times):
    result[f"{name}_s"], result[f"{name}_min_s"] = common.median(ts), min(ts)
  # Recompilation check: one compiled executable per jitted function after all calls.
  result["n_compiles"] = result["jax_forward"]._cache_size()  # pylint: disable=protected-access
  if profile_dir:
    with jax.profiler.trace(os.path.join(profile_dir, f"stylegan2_{size}px_b{batch}"),
                            create_perfetto_trace=True):
      for _ in range(2):
        runs[1]()
  del g
  return result


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.stylegan2_forward",
                                   description=__doc__.split("\n", maxsplit=1)[0])
  parser.add_argument("--torch-repo", "--torch_repo", dest="torch_repo", required=True,
                      help="checkout of github.com/rosinality/stylegan2-pytorch")
  parser.add_argument("--sizes", default="256,1024", help="comma-separated resolutions")
  parser.add_argument("--batches", default="1,4", help="comma-separated batch sizes")
  parser.add_argument("--iters", type=int, default=5, help="timed calls per side and cell")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--quick", action="store_true",
                      help="256 px, batch 4, 1 timed call per side (about a minute on 2 cores)")
  parser.add_argument("--compare-layers", "--compare_layers", dest="compare_layers", default="",
                      help="also time the model built on this alternative layers.py (before / "
                      "after an optimisation) in the same loop")
  parser.add_argument("--write_results", "--write-results", action="store_true",
                      help=f"write the table into benchmarks/RESULTS.md ('{SECTION}')")
  parser.add_argument("--section", default=SECTION, help="RESULTS.md section title to write")
  parser.add_argument("--profile", default="",
                      help="also write a jax.profiler trace (TensorBoard + Perfetto) of two JAX "
                      "calls per cell under this directory")
  args = parser.parse_args(argv)
  if args.quick:
    args.sizes, args.batches, args.iters = "256", "4", 1
  sizes = [int(s) for s in args.sizes.split(",")]
  batches = [int(b) for b in args.batches.split(",")]

  import torch  # pylint: disable=import-outside-toplevel
  device = "cuda" if jax.devices()[0].platform == "gpu" and torch.cuda.is_available() else "cpu"
  torch.set_num_threads(os.cpu_count())
  rosinality = import_rosinality(args.torch_repo, device)
  alternative = load_alternative_stylegan2(args.compare_layers) if args.compare_layers else None
  print(f"{common.machine()}; torch {torch.__version__} ({torch.get_num_threads()} threads, "
        f"{device}); rosinality checkout {os.path.abspath(args.torch_repo)}", flush=True)

  results = []
  for size in sizes:
    for batch in batches:
      r = run_cell(rosinality, size, batch, args.iters, args.seed, device, args.profile,
                   alternative)
      results.append(r)
      line = (f"{size:5d} px batch {batch}: torch {batch / r['torch_s']:6.2f} img/s | jax "
              f"{batch / r['jax_s']:6.2f} img/s | jax/torch {r['torch_s'] / r['jax_s']:.2f}x "
              f"(best-of: {r['torch_min_s'] / r['jax_min_s']:.2f}x) | max|diff| "
              f"{r['jax_diff']:.1e} | compile {r['jax_compile_s']:.1f} s, "
              f"{r['n_compiles']} executable(s)")
      if alternative is not None:
        line += (f" | alt layers {batch / r['jax_alt_s']:6.2f} img/s, alt/torch "
                 f"{r['torch_s'] / r['jax_alt_s']:.2f}x, max|diff| {r['jax_alt_diff']:.1e}")
      print(line, flush=True)

  columns = ["config-f", "batch", "PyTorch img/s", "Flax (jit) img/s", "Flax / PyTorch",
             "(best-of-N ratio)", "max abs diff", "JAX compile s"]
  if alternative is not None:
    columns += ["alt layers img/s", "alt / PyTorch"]
  rows = []
  for r in results:
    b = r["batch"]
    row = [f"{r['size']} px", b, common.fmt(b / r["torch_s"]), common.fmt(b / r["jax_s"]),
           f"**{r['torch_s'] / r['jax_s']:.2f}x**", f"{r['torch_min_s'] / r['jax_min_s']:.2f}x",
           f"{r['jax_diff']:.1e}", f"{r['jax_compile_s']:.1f}"]
    if alternative is not None:
      row += [common.fmt(b / r["jax_alt_s"]), f"{r['torch_s'] / r['jax_alt_s']:.2f}x"]
    rows.append(row)
  table = common.markdown_table(columns, rows)
  cmd = "python -m benchmarks.stylegan2_forward --torch-repo PATH " + (
      "--quick" if args.quick else
      f"--sizes {args.sizes} --batches {args.batches} --iters {args.iters}")
  if args.compare_layers:
    cmd += " --compare-layers OLD_LAYERS.py"
  body = "\n".join([
      common.header(),
      "",
      f"`{cmd}`: torch {torch.__version__} ({torch.get_num_threads()} threads, {device}, "
      f"inference_mode) against jax.jit, median of {args.iters} alternating calls after one "
      "warm-up call each (the ratio column; the best-of-N ratio compares the fastest calls); "
      "z -> image with the stored noise buffers, both sides from the same converted random "
      "weights (max abs diff of the images).",
      "", table])
  print(body)
  if args.write_results:
    common.write_section(args.section, body)
  return 0


if __name__ == "__main__":
  sys.exit(main())
