"""What every command-line tool shares (difai_jax/cli.py): --help, quiet logs, one-line errors,
output checks before the work, the compilation cache; and the small tools' own bad flags.

The tools run as subprocesses, as users run them, through :func:`run_cli`, which also reports
whether JAX was imported: a check that runs "before loading anything" must not import it.
"""

import glob
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
from PIL import Image
import pytest

from difai_jax import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_JAX_MARK = "JAX_IMPORTED="


def run_cli(module: str, *args: str, env: dict | None = None,
            timeout: int = 300) -> subprocess.CompletedProcess:
  """``python -m module args`` (cwd = the repo); ``proc.jax_imported`` tells if it imported JAX."""
  code = ("import atexit, runpy, sys\n"
          f"atexit.register(lambda: print('{_JAX_MARK}' + str('jax' in sys.modules), "
          "file=sys.stderr))\n"
          f"sys.argv = [{module!r}] + sys.argv[1:]\n"
          f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n")
  full_env = dict(os.environ, JAX_PLATFORMS="cpu", **(env or {}))
  proc = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, env=full_env,
                        capture_output=True, text=True, timeout=timeout, check=False)
  marks = re.findall(_JAX_MARK + r"(True|False)", proc.stderr)
  proc.jax_imported = marks[-1] == "True" if marks else None
  proc.stderr = re.sub(_JAX_MARK + r"(True|False)\n?", "", proc.stderr)
  return proc


def assert_one_line_error(proc, *fragments):
  """Exit status 1, no traceback, and an ``error:`` line holding every fragment."""
  assert proc.returncode == 1, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  errors = [l for l in proc.stderr.splitlines() if l.startswith("error: ")]
  assert len(errors) == 1, proc.stderr[-2000:]
  for fragment in fragments:
    assert fragment in errors[0], (fragment, errors[0])
  return errors[0]


# ---- --help -----------------------------------------------------------------------------------

def _entry_points() -> list[str]:
  """Every module with a ``__main__`` guard: difai_jax.* and weights_conversion.*."""
  modules = []
  for pattern in ("difai_jax/**/*.py", "weights_conversion/*.py"):
    for path in sorted(glob.glob(os.path.join(REPO, pattern), recursive=True)):
      with open(path, encoding="utf-8") as f:
        if re.search(r'^if __name__ == "__main__":', f.read(), re.M):
          modules.append(os.path.relpath(path, REPO)[:-3].replace(os.sep, "."))
  return modules


@pytest.mark.parametrize("module", _entry_points())
def test_help_exits_zero(module):
  proc = run_cli(module, "--help")
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "usage" in proc.stdout.lower() or "flags:" in proc.stdout.lower(), proc.stdout[:500]
  if module.startswith("weights_conversion."):   # the usage line names the command to type
    assert f"usage: python -m {module} " in proc.stdout, proc.stdout[:500]


def test_flag_errors_still_exit_one():
  proc = run_cli("difai_jax.data.preview", "--no_such_flag")
  assert proc.returncode == 1 and "FATAL Flags parsing error" in proc.stderr, proc.stderr


def test_entry_points_are_found():
  found = set(_entry_points())
  assert {"difai_jax.train", "difai_jax.evaluate", "difai_jax.inpaint", "difai_jax.sample",
          "difai_jax.invert", "difai_jax.data.preview", "weights_conversion.stylegan2",
          "weights_conversion.psp", "weights_conversion.vgg19"} <= found


# ---- quiet logs, one-line errors, the compilation cache ------------------------------------------

_TOOL = textwrap.dedent("""
    import os, sys
    import numpy as np
    from absl import flags
    from difai_jax import cli
    flags.DEFINE_string("workdir", None, "")
    flags.DEFINE_boolean("fail", False, "")

    def main(argv):
      import jax, orbax.checkpoint as ocp
      jax.devices()                                    # backend discovery (the TPU line)
      path = os.path.join(flags.FLAGS.workdir, "ckpt")
      with ocp.StandardCheckpointer() as ckptr:        # orbax logs at INFO
        ckptr.save(path, {"w": np.arange(3.0)})
        ckptr.wait_until_finished()
        ckptr.restore(path)
      cache = cli.enable_compilation_cache(os.path.join(flags.FLAGS.workdir, "cache"))
      jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
      jax.jit(lambda x: x * 2 + 1)(np.ones(3)).block_until_ready()
      print("cache", cache, sorted(os.listdir(cache)) != [])
      if flags.FLAGS.fail:
        raise cli.CliError("--workdir is not what it should be")
      return 0

    if __name__ == "__main__":
      cli.run(main)
    """)


@pytest.fixture(scope="module")
def tool(tmp_path_factory):
  path = tmp_path_factory.mktemp("tool") / "tool.py"
  path.write_text(_TOOL)
  return str(path)


def _run_tool(tool, workdir, *args):
  env = {k: v for k, v in os.environ.items() if k not in ("JAX_PLATFORMS", "TF_CPP_MIN_LOG_LEVEL")}
  env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
  return subprocess.run([sys.executable, tool, f"--workdir={workdir}", *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300, check=False)


def test_quiet_by_default_one_line_errors_and_cache(tool, tmp_path):
  proc = _run_tool(tool, tmp_path, "--fail")
  assert_one_line_error(proc, "--workdir is not what it should be")
  assert proc.stderr.strip().splitlines() == ["error: --workdir is not what it should be"], \
      proc.stderr[-3000:]
  assert f"cache {tmp_path / 'cache'} True" in proc.stdout   # a compiled program was stored


def test_verbosity_brings_the_logs_back(tool, tmp_path):
  proc = _run_tool(tool, tmp_path, "--verbosity=0")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "checkpoint" in proc.stderr and re.search(r"^I\d{4} ", proc.stderr, re.M), \
      proc.stderr[-3000:]


def test_compilation_cache_folder_choice(tmp_path, monkeypatch, capsys):
  monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
  monkeypatch.setenv(cli.CACHE_ENV, str(tmp_path / "from_env"))
  assert cli.default_cache_dir() == str(tmp_path / "from_env")
  monkeypatch.delenv(cli.CACHE_ENV)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  assert cli.default_cache_dir() == str(tmp_path / "xdg" / "difai_jax" / "jax_cache")
  assert cli.enable_compilation_cache("none") is None
  (tmp_path / "file").write_text("")
  assert cli.enable_compilation_cache(str(tmp_path / "file" / "cache")) is None
  assert "not writable" in capsys.readouterr().err


# ---- outputs checked before the work ------------------------------------------------------------

@pytest.fixture
def read_only_dir(tmp_path):
  """A folder even root cannot write into (chattr +i), or None where chattr is unavailable."""
  folder = tmp_path / "read_only"
  folder.mkdir()
  made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False) \
      if os.path.exists("/usr/bin/chattr") else None
  if made is None or made.returncode != 0:
    yield None
    return
  try:
    yield folder
  finally:
    subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_output_checks_name_the_path_and_create_nothing(tmp_path, read_only_dir):
  (tmp_path / "a_file").write_text("x")
  before = sorted(os.listdir(tmp_path))
  cases = [
      (cli.check_output_dir, tmp_path / "a_file" / "out",
       f"--out {tmp_path}/a_file/out cannot be created: {tmp_path}/a_file is a file, not a folder"),
      (cli.check_output_dir, tmp_path / "a_file", f"--out {tmp_path}/a_file is a file, not a "
       "folder"),
      (cli.check_output_file, tmp_path / "a_file" / "x.png",
       f"--out {tmp_path}/a_file/x.png cannot be created: {tmp_path}/a_file is a file"),
      (cli.check_output_file, tmp_path, f"--out {tmp_path} is a folder; give a file name"),
  ]
  if read_only_dir is not None:
    cases += [
        (cli.check_output_dir, read_only_dir, f"--out {read_only_dir} cannot be written: "),
        (cli.check_output_dir, read_only_dir / "new" / "deeper",
         f"--out {read_only_dir}/new/deeper cannot be written (in {read_only_dir}, where it would "
         "be created): "),
        (cli.check_output_file, read_only_dir / "x.png", f"--out {read_only_dir}/x.png cannot be "
         "written: "),
    ]
  for check, path, message in cases:
    with pytest.raises(cli.CliError) as e:
      check(str(path))
    assert str(e.value).startswith(message), (str(e.value), message)
    assert "\n" not in str(e.value)
  assert sorted(os.listdir(tmp_path)) == before
  if read_only_dir is not None:
    assert os.listdir(read_only_dir) == []
  # Fine folders pass, and nothing is left behind by the probe.
  assert cli.check_output_dir(str(tmp_path / "new" / "out")) == str(tmp_path / "new" / "out")
  assert cli.check_output_file(str(tmp_path / "x.png")) == str(tmp_path / "x.png")
  assert sorted(os.listdir(tmp_path)) == before


# ---- sample, preview, invert: bad flags refused before the work ---------------------------------

def test_sample_and_preview_refuse_bad_flags_before_the_work(tmp_path):
  (tmp_path / "a_file").write_text("x")
  proc = run_cli("difai_jax.sample", f"--out={tmp_path}/a_file/grid.png")
  assert_one_line_error(proc, f"--out {tmp_path}/a_file/grid.png cannot be created: "
                        f"{tmp_path}/a_file is a file, not a folder")
  assert proc.jax_imported is False
  proc = run_cli("difai_jax.sample", "--direction=99", f"--out={tmp_path}/grid.png")
  assert_one_line_error(proc, "--direction 99 out of range: the generator has 64 SeFa "
                        "directions (0..63)")
  assert proc.jax_imported is False
  proc = run_cli("difai_jax.data.preview", "--size=300", f"--out={tmp_path}/sheet.png")
  assert_one_line_error(proc, "--size 300: toy faces are drawn at 32..256 px")
  assert proc.jax_imported is False
  proc = run_cli("difai_jax.data.preview", "--num=0", f"--out={tmp_path}/sheet.png")
  assert_one_line_error(proc, "--num 0: the sheet shows 1..64 faces per row")
  assert sorted(os.listdir(tmp_path)) == ["a_file"]


def test_invert_checks_its_output_and_notes_small_inputs(tmp_path, capsys):
  from difai_jax import invert
  (tmp_path / "a_file").write_text("x")
  Image.fromarray(np.full((10, 12, 3), 90, np.uint8)).save(tmp_path / "tiny.png")
  with pytest.raises(cli.CliError, match="a_file is a file, not a folder"):
    invert.run(str(tmp_path / "no_model"), str(tmp_path / "tiny.png"),
               str(tmp_path / "a_file" / "out"))
  # The image is read before the weights: a broken one is named at once (this "model" has a
  # config.json but no weights at all).
  (tmp_path / "psp").mkdir()
  (tmp_path / "psp" / "config.json").write_text('{"kind": "psp", "input_size": 256}')
  (tmp_path / "broken.png").write_bytes(b"not an image")
  with pytest.raises(ValueError, match=r"cannot read image file '.*broken\.png'"):
    invert.run(str(tmp_path / "psp"), str(tmp_path / "broken.png"), str(tmp_path / "out"))
  assert not (tmp_path / "out").exists()
  image = invert.load_input(str(tmp_path / "tiny.png"), 256)
  assert image.shape == (256, 256, 3)
  note = capsys.readouterr().out
  assert "12x10; resized to 256x256" in note and "far smaller than that (upscaled 25.6x)" in note
  assert "not square" in note


def test_runs_folder_is_ignored_by_git():
  with open(os.path.join(REPO, ".gitignore"), encoding="utf-8") as f:
    assert "runs/" in f.read().split()
