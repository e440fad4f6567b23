"""The README's quick start and .ci/run stay in step, and the sample CLI writes its files."""

# pylint: disable=import-outside-toplevel
import ast
import os
import re
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _quick_start_lines():
  text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
  section = text.split("## Quick start", 1)[1]
  block = re.search(r"```(?:bash)?\n(.*?)```", section, re.S).group(1)
  return [line for line in block.strip().splitlines() if line.strip()]


def test_quick_start_has_two_lines_and_ci_runs_the_test_line():
  lines = _quick_start_lines()
  assert len(lines) == 2
  ci = open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8").read()
  ci_commands = [l for l in ci.splitlines() if l.strip() and not l.startswith("#")
                 and not l.startswith(("set ", "cd ", "export "))]
  # The Debian packages first (the browser test's Chromium), then README's test line as it is.
  assert ci_commands[-1] == lines[1], ci_commands
  assert len(ci_commands) == 2, ci_commands
  assert ci_commands[0].startswith("apt-get install -y -q chromium chromium-driver ")


def test_sample_cli_writes_grid_and_sefa_strip(tmp_path):
  out = tmp_path / "grid.png"
  proc = subprocess.run([sys.executable, "-m", "difai_jax.sample", "--num", "2", "--steps", "3",
                         "--random_size", "16", "--out", str(out)],
                        capture_output=True, text=True, cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr
  from PIL import Image
  grid = Image.open(out)
  strip = Image.open(tmp_path / "grid_sefa.png")
  assert grid.size[1] == 16 + 2 * 2                 # one row of 16 px samples, padded
  assert strip.size[0] > grid.size[0] - 20 and strip.size[1] > grid.size[1]


def test_configs_are_data_that_import_nothing_from_the_package():
  import ast
  import importlib
  import ml_collections
  folder = os.path.join(ROOT, "configs")
  names = sorted(f[:-3] for f in os.listdir(folder) if f.endswith(".py") and f != "__init__.py")
  assert {"toy_psp", "toy_stylegan2", "toy_recognizer", "celebahq", "data_defaults"} <= set(names)
  for name in names:
    with open(os.path.join(folder, f"{name}.py"), encoding="utf-8") as f:
      tree = ast.parse(f.read())
    imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    imported += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [m for m in imported if m and m.split(".")[0] == "difai_jax"], (name, imported)
    module = importlib.import_module(f"configs.{name}")
    if hasattr(module, "get_config"):
      assert isinstance(module.get_config(), ml_collections.ConfigDict), name
  # The stages fill in the same defaults the config files use.
  from configs import stage_defaults
  from difai_jax.training.stages import psp, recognizer, stylegan2
  assert stylegan2.config_defaults() == stage_defaults.stylegan2()
  assert psp.train_defaults() == stage_defaults.psp_train()
  assert recognizer.config_defaults() == stage_defaults.recognizer()


# ---- the import graph ----

COMMANDS = ("app", "compare", "evaluate", "export", "inpaint", "invert", "sample", "summary",
            "train", "data.preview")


def _import_graph() -> dict[str, set[str]]:
  """{module: the package's modules it imports anywhere in its file}; ``from P import m`` of a
  submodule is an edge to the submodule, not to the package P."""
  root = os.path.join(ROOT, "difai_jax")
  paths = {}
  for folder, _, files in os.walk(root):
    for f in files:
      if f.endswith(".py"):
        rel = os.path.relpath(os.path.join(folder, f), ROOT)[:-3].split(os.sep)
        paths[".".join(rel[:-1] if rel[-1] == "__init__" else rel)] = os.path.join(folder, f)
  graph = {}
  for name, path in paths.items():
    with open(path, encoding="utf-8") as f:
      tree = ast.parse(f.read())
    edges = set()
    for node in ast.walk(tree):
      if isinstance(node, ast.Import):
        edges.update(a.name for a in node.names)
      elif isinstance(node, ast.ImportFrom) and node.module:
        subs = {f"{node.module}.{a.name}" for a in node.names} & set(paths)
        edges.update(subs or {node.module})
    graph[name] = {e for e in edges if e in paths and e != name}
  return graph


def test_library_never_imports_a_command_and_no_import_cycle():
  graph = _import_graph()
  commands = {f"difai_jax.{c}" for c in COMMANDS}
  assert commands <= set(graph)
  upward = sorted((m, d) for m, deps in graph.items() if m not in commands
                  for d in deps & commands)
  assert not upward, f"library modules importing commands: {upward}"
  cycles, done = [], set()

  def visit(module, path):
    for dep in sorted(graph[module]):
      if dep in path:
        cycles.append(path[path.index(dep):] + [dep])
      elif dep not in done:
        visit(dep, path + [dep])
    done.add(module)

  for module in sorted(graph):
    if module not in done:
      visit(module, [module])
  assert not cycles, cycles


def test_python_lines_fit_in_100_columns():
  tracked = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
  assert len(tracked) > 100, tracked                     # the listing really ran
  long_lines = []
  for path in tracked:
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
      long_lines += [f"{path}:{n}" for n, line in enumerate(f, 1) if len(line.rstrip("\n")) > 100]
  assert not long_lines, long_lines


def test_top_level_definitions_are_two_blank_lines_apart():
  """STYLE.md's layout (Google style): two blank lines before each module-level def or class
  (its decorators and comments count as part of it; a section's header comment may stand one
  blank line above its first definition)."""
  tracked = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
  crowded = []
  for path in tracked:
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
      source = f.read()
    lines = source.split("\n")
    for node in ast.parse(source).body:
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        first = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1   # 0-based
        while first > 0 and lines[first - 1].startswith("#"):
          first -= 1
        above = lines[first - 2] if first >= 2 else ""
        if lines[first - 1] == "" and above and not above.startswith("#"):
          crowded.append(f"{path}:{first + 1}")
  assert not crowded, crowded


def test_no_library_function_is_longer_than_60_lines():
  long_functions = []
  for folder, _, files in os.walk(os.path.join(ROOT, "difai_jax")):
    for name in files:
      if name.endswith(".py"):
        path = os.path.join(folder, name)
        with open(path, encoding="utf-8") as f:
          tree = ast.parse(f.read())
        long_functions += [f"{os.path.relpath(path, ROOT)}:{node.lineno} {node.name}"
                           for node in ast.walk(tree)
                           if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                           and node.end_lineno - node.lineno + 1 > 60]
  assert not long_functions, long_functions


def test_shipped_asset_files_stay_small_and_new_saves_split_their_data(tmp_path):
  """Every clone downloads every version of the assets: no file over 8 MiB, and
  ``pretrained.save`` splits a model's data into files of about ``MAX_DATA_FILE``."""
  from difai_jax import pretrained  # pylint: disable=import-outside-toplevel
  root = os.path.join(os.path.dirname(pretrained.__file__), "assets")
  sizes = {os.path.join(d, f): os.path.getsize(os.path.join(d, f))
           for d, _, files in os.walk(root) for f in files}
  assert sizes and max(sizes.values()) <= 8 * 2**20, max(sizes.items(), key=lambda kv: kv[1])
  big = {"w": np.arange(3 * 2**20, dtype=np.float32).reshape(3, 2**20)}   # 12 MiB, no zeros
  pretrained.save(tmp_path / "m", "toy_recognizer", {}, big)
  files = [os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(tmp_path) for f in fs]
  assert sum(files) > 8 * 2**20 and max(files) <= 2 * pretrained.MAX_DATA_FILE
