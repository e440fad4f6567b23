"""README's commands work as written: every ``python -m`` module it names answers ``--help``
with status 0, and the lines a user runs right after install (the toy faces, one face and its
mask, the shipped toy DiFAI inpainting it) run end to end.

The ``--help`` calls run side by side (one process each; they are mostly start-up time).
"""

import os
import re
import shlex
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, "README.md")
_NOT_OURS = ("pytest", "pip")


def _readme() -> str:
  with open(README, encoding="utf-8") as f:
    return f.read()


def readme_modules() -> list[str]:
  """The modules of every ``python -m MODULE`` in README (code blocks and inline code)."""
  modules = re.findall(r"python -m\s+([A-Za-z_][\w.]*)", _readme())
  return sorted({m for m in modules if m.split(".")[0] not in _NOT_OURS})


def _env() -> dict:
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
  return env


def test_readme_names_the_commands_users_call():
  modules = readme_modules()
  for command in ("train", "evaluate", "inpaint", "sample", "invert", "export", "app", "compare",
                  "summary", "data.preview"):
    assert f"difai_jax.{command}" in modules, command
  assert any(m.startswith("weights_conversion.") for m in modules)


def test_every_readme_command_answers_help():
  modules = readme_modules()
  procs = {m: subprocess.Popen([sys.executable, "-m", m, "--help"], cwd=REPO, env=_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for m in modules}
  failed = {}
  for module, proc in procs.items():
    out, err = proc.communicate(timeout=300)
    if proc.returncode != 0 or "usage" not in (out + err).lower() and "flags" not in out + err:
      failed[module] = (proc.returncode, err[-1500:])
  assert not failed, failed


def _quick_start_lines() -> list[str]:
  """The commands of README's "Right after install" block, in order."""
  text = _readme()
  start = text.index("Right after install")
  block = text[text.index("```bash", start) + len("```bash"):text.index("```", text.index(
      "```bash", start) + 7)]
  return [line.split("   #")[0].strip() for line in block.strip().splitlines()]


def test_readme_toy_lines_run_end_to_end(tmp_path):
  lines = _quick_start_lines()
  assert len(lines) == 3 and lines[-1].startswith("python -m difai_jax.inpaint")
  for line in lines:
    argv = shlex.split(line)
    assert argv[0] == "python"
    proc = subprocess.run([sys.executable] + argv[1:], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, (line, proc.stdout[-2000:], proc.stderr[-2000:])
  assert os.path.isfile(tmp_path / "faces.png") and os.path.isfile(tmp_path / "mask.png")
  written = sorted(os.listdir(tmp_path / "out"))
  k = int(re.search(r"--num_completions (\d+)", lines[-1]).group(1))
  assert set(written) == {"grid.png"} | {f"completion_{j:02d}.png" for j in range(k)}
