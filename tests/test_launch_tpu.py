"""launch_tpu.sh: --help, --dry-run output, option errors, and the real code path run against a
fake ``gcloud`` that records its calls and plays the TPU workers locally (no cloud, no network).

The dry-run tests give the script a PATH holding only a ``gcloud`` that fails the test when
called, so they also show that --dry-run needs no gcloud and no other program.
"""

import os
import shlex
import shutil
import subprocess
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "launch_tpu.sh")
BASH = shutil.which("bash")
GIT = shutil.which("git")

SETTINGS = ["TPU_NAME", "ZONE", "ACCELERATOR_TYPE", "RUNTIME_VERSION", "PROJECT", "SPOT",
            "PREEMPTIBLE", "CONFIG", "WORKDIR", "EXTRA_ARGS", "PIP_EXTRAS", "PYTHON",
            "REMOTE_DIR", "VENV_DIR", "LOG_DIR", "LOGS_WORKER", "ASSUME_EXISTS"]
TPU = ["gcloud", "compute", "tpus", "tpu-vm"]

# Records every call (arguments tab-separated, one call a line). In dry-run tests it must never
# run: it exits 97. Otherwise it plays the slice: describe fails until create ran (or
# FAKE_STATE is set), scp copies into FAKE_REMOTE_HOME, ssh runs --command there with bash
# (except the log stream, which is only recorded).
FAKE_GCLOUD = r"""
printf '%s\t' "$@" >> "$FAKE_GCLOUD_LOG"; printf '\n' >> "$FAKE_GCLOUD_LOG"
[[ ${FAKE_MODE:-forbid} == forbid ]] && exit 97
created="$FAKE_GCLOUD_LOG.created"
case "$4" in
  describe)
    state=${FAKE_STATE:-}
    [[ -z $state && -e $created ]] && state=READY
    [[ -z $state ]] && { echo "ERROR: NOT_FOUND: $5" >&2; exit 1; }
    if [[ "$*" == *ipAddress* ]]; then echo 10.1.2.3; else echo "$state"; fi ;;
  create) touch "$created" ;;
  scp) cp "$5" "$FAKE_REMOTE_HOME/${6#*:}" ;;
  ssh)
    shift 4
    while (($#)); do [[ $1 == --command ]] && cmd=$2; shift; done
    [[ $cmd == tail* ]] && exit 0
    HOME=$FAKE_REMOTE_HOME bash -c "$cmd" ;;
esac
"""

# The workers' venv: python and pip record their arguments.
FAKE_PYTHON = "echo \"fake python: $*\"\n"
FAKE_PIP = "echo \"$*\" >> \"$(dirname \"$0\")/pip_calls\"\n"


def _write_exe(path, text):
  """An executable bash script; the shebang names bash by path (PATH may hold only fakes)."""
  path.write_text(f"#!{BASH}\n" + text.lstrip("\n"))
  path.chmod(0o755)


@pytest.fixture
def fakebin(tmp_path):
  """A directory holding only the fake gcloud."""
  d = tmp_path / "fakebin"
  d.mkdir()
  _write_exe(d / "gcloud", FAKE_GCLOUD)
  return d


def _run(args, tmp_path, path, script=SCRIPT, stdin=None, **settings):
  env = {"PATH": str(path), "HOME": str(tmp_path), "TMPDIR": str(tmp_path),
         "FAKE_GCLOUD_LOG": str(tmp_path / "gcloud_calls"),
         "FAKE_REMOTE_HOME": str(tmp_path / "remote_home")}
  env.update({k: str(v) for k, v in settings.items()})
  return subprocess.run([BASH, script] + list(args), capture_output=True, text=True, env=env,
                        input=stdin or "", timeout=60)


def _commands(stdout):
  """The '+ ' lines of a dry run, each split back into its argument list."""
  lines = [l for l in stdout.splitlines() if l.strip()]
  assert lines and all(l.startswith("+ ") for l in lines), stdout
  return [shlex.split(l[2:]) for l in lines]


def _option(cmd, name):
  return cmd[cmd.index(name) + 1]


def _gcloud_calls(tmp_path):
  log = tmp_path / "gcloud_calls"
  if not log.exists():
    return []
  return [l.rstrip("\t").split("\t") for l in log.read_text().splitlines()]


def _bash_parses(command):
  return subprocess.run([BASH, "-n", "-c", command], capture_output=True).returncode == 0


def test_script_is_executable_bash_with_strict_mode():
  assert os.access(SCRIPT, os.X_OK)
  text = open(SCRIPT, encoding="utf-8").read()
  assert text.startswith("#!/usr/bin/env bash\n") and "\nset -euo pipefail\n" in text


def test_help_lists_every_setting_with_its_value(tmp_path, fakebin):
  proc = _run(["--help"], tmp_path, fakebin, TPU_NAME="my-slice")
  assert proc.returncode == 0, proc.stderr
  for name in SETTINGS:
    assert f"\n  {name} " in proc.stdout, name
  assert "TPU_NAME         = my-slice" in proc.stdout          # current value ...
  assert "(default difai)" in proc.stdout                      # ... and its default
  assert "ZONE             = us-central2-b" in proc.stdout
  for option in ("--dry-run", "--logs", "--delete", "--yes", "--no-follow"):
    assert option in proc.stdout
  assert _gcloud_calls(tmp_path) == []


def test_dry_run_prints_every_step_without_calling_gcloud(tmp_path, fakebin):
  proc = _run(["--dry-run"], tmp_path, fakebin, WORKDIR="gs://bucket/run",
              EXTRA_ARGS="--config.train.batch_size=64 --config.data.path=/data/hq")
  assert proc.returncode == 0, proc.stderr
  assert _gcloud_calls(tmp_path) == []                         # fake gcloud never ran
  cmds = _commands(proc.stdout)
  kinds = [c[4] if c[:4] == TPU else c[0] for c in cmds]
  assert kinds == ["describe", "create", "describe", "git", "scp", "ssh", "ssh", "ssh"]
  assert cmds[1] == TPU + ["create", "difai", "--zone", "us-central2-b", "--accelerator-type",
                           "v4-32", "--version", "tpu-ubuntu2204-base"]
  archive = str(tmp_path / "difai-jax-difai.tar.gz")
  assert cmds[3] == ["git", "-C", ROOT, "archive", "--format=tar.gz", "-o", archive, "HEAD"]
  assert cmds[4] == TPU + ["scp", archive, "difai:difai-jax.tar.gz", "--zone", "us-central2-b",
                           "--worker=all"]
  install, train, follow = cmds[5], cmds[6], cmds[7]
  for cmd in (install, train):
    assert cmd[:6] == TPU + ["ssh", "difai"] and "--worker=all" in cmd
    assert _bash_parses(_option(cmd, "--command"))
  install_sh = _option(install, "--command")
  assert 'tar -xzf "$HOME"/difai-jax.tar.gz -C "$HOME"/difai-jax' in install_sh
  assert "pip install -q 'jax[tpu]' -e \"$HOME\"/difai-jax'[train]'" in install_sh
  train_sh = _option(train, "--command")
  assert ("python -m difai_jax.train --config configs/celebahq.py --workdir gs://bucket/run "
          "--coordinator_address='<worker-0-internal-ip>:8476' "
          "--config.train.batch_size=64 --config.data.path=/data/hq "
          '>> "$HOME"/difai-logs/train.log 2>&1 < /dev/null &') in train_sh
  assert "nohup" in train_sh
  assert "--worker=0" in follow and _option(follow, "--command") == (
      'tail -n 100 -F "$HOME"/difai-logs/train.log')


def test_dry_run_follows_env_overrides(tmp_path, fakebin):
  tricky = "--config.data.path=/data/it's here"                # a quote survives both shells
  proc = _run(["--dry-run", "--no-follow"], tmp_path, fakebin, TPU_NAME="pod7",
              ZONE="europe-west4-a", ACCELERATOR_TYPE="v5litepod-16",
              RUNTIME_VERSION="v2-alpha-tpuv5-lite",
              PROJECT="my-proj", SPOT="1", CONFIG="configs/demo.py", WORKDIR="runs/a",
              EXTRA_ARGS=tricky, PIP_EXTRAS="", LOG_DIR="/var/tmp/logs")
  assert proc.returncode == 0, proc.stderr
  cmds = _commands(proc.stdout)
  assert cmds[1] == TPU + ["create", "pod7", "--zone", "europe-west4-a", "--project", "my-proj",
                           "--accelerator-type", "v5litepod-16", "--version",
                           "v2-alpha-tpuv5-lite", "--spot"]
  gcloud_cmds = [c for c in cmds if c[0] == "gcloud"]
  assert all(_option(c, "--zone") == "europe-west4-a" and _option(c, "--project") == "my-proj"
             for c in gcloud_cmds)
  assert [c[4] for c in gcloud_cmds][-1] == "ssh"              # --no-follow: no log stream
  install_sh, train_sh = (_option(c, "--command") for c in cmds[-2:])
  assert install_sh.endswith("pip install -q 'jax[tpu]' -e \"$HOME\"/difai-jax")   # no extras
  train_words = shlex.split(train_sh.split("setsid nohup ", 1)[1].split(" >>", 1)[0])
  assert train_words[1:] == ["-m", "difai_jax.train", "--config", "configs/demo.py",
                             "--workdir", "$HOME/runs/a",
                             "--coordinator_address=<worker-0-internal-ip>:8476",
                             "--config.data.path=/data/it's", "here"]
  assert ">> /var/tmp/logs/train.log" in train_sh


def test_dry_run_with_existing_slice_has_no_create(tmp_path, fakebin):
  proc = _run(["--dry-run"], tmp_path, fakebin, WORKDIR="gs://b/r", ASSUME_EXISTS="1",
              PREEMPTIBLE="1")
  assert proc.returncode == 0, proc.stderr
  cmds = _commands(proc.stdout)
  assert not any("create" in c for c in cmds)
  assert any("python -m difai_jax.train" in " ".join(c) for c in cmds)
  proc = _run(["--dry-run"], tmp_path, fakebin, WORKDIR="gs://b/r", PREEMPTIBLE="1")
  assert _commands(proc.stdout)[1][-1] == "--preemptible"
  assert _gcloud_calls(tmp_path) == []


def test_dry_run_needs_no_gcloud_on_path(tmp_path):
  empty = tmp_path / "empty_bin"
  empty.mkdir()
  for args in (["--dry-run"], ["--dry-run", "--logs"], ["--dry-run", "--delete"]):
    proc = _run(args, tmp_path, empty, WORKDIR="gs://b/r")
    assert proc.returncode == 0, (args, proc.stderr)
    assert _commands(proc.stdout)[-1][:4] == TPU
  proc = _run(["--dry-run", "--delete"], tmp_path, empty)
  assert _commands(proc.stdout) == [TPU + ["delete", "difai", "--zone", "us-central2-b",
                                           "--quiet"]]


@pytest.mark.parametrize("args,settings,message", [
    (["--bogus"], {}, "unknown option --bogus"),
    (["--dry-run", "-x"], {"WORKDIR": "gs://b"}, "unknown option -x"),
    (["--logs", "--delete"], {}, "exclude each other"),
    (["--dry-run"], {}, "set WORKDIR"),
    (["--dry-run"], {"WORKDIR": "gs://b", "SPOT": "1", "PREEMPTIBLE": "1"}, "at most one"),
    (["--dry-run"], {"WORKDIR": "gs://b", "SPOT": "yes"}, "SPOT must be 0 or 1"),
])
def test_bad_options_exit_2_with_a_message(tmp_path, fakebin, args, settings, message):
  proc = _run(args, tmp_path, fakebin, **settings)
  assert proc.returncode == 2
  assert message in proc.stderr and proc.stdout == ""
  if args[0] == "--bogus":
    assert "Usage: launch_tpu.sh" in proc.stderr
  assert _gcloud_calls(tmp_path) == []


# ---- the real code path against the fake gcloud ------------------------------------------------

@pytest.fixture
def checkout(tmp_path):
  """A one-commit git repository holding launch_tpu.sh and a config: what gets archived."""
  repo = tmp_path / "repo"
  (repo / "configs").mkdir(parents=True)
  shutil.copy(SCRIPT, repo / "launch_tpu.sh")
  (repo / "configs" / "celebahq.py").write_text("# config\n")
  git = [GIT, "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com",
         "-c", "commit.gpgsign=false"]
  env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "GIT_CONFIG_NOSYSTEM": "1"}
  for args in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "x"]):
    subprocess.run(git + args, check=True, env=env, capture_output=True)
  return repo


@pytest.fixture
def remote_home(tmp_path):
  """The workers' home, with an existing venv whose python and pip only record."""
  home = tmp_path / "remote_home"
  (home / "difai-venv" / "bin").mkdir(parents=True)
  _write_exe(home / "difai-venv" / "bin" / "python", FAKE_PYTHON)
  _write_exe(home / "difai-venv" / "bin" / "pip", FAKE_PIP)
  return home


def _real(args, tmp_path, fakebin, checkout, **settings):
  path = f"{fakebin}{os.pathsep}{os.environ['PATH']}"          # the fake shadows any gcloud
  return _run(args, tmp_path, path, script=str(checkout / "launch_tpu.sh"), FAKE_MODE="play",
              **settings)


def test_real_run_creates_installs_and_starts_on_all_workers(tmp_path, fakebin, checkout,
                                                              remote_home):
  proc = _real([], tmp_path, fakebin, checkout, WORKDIR="gs://bucket/run",
               EXTRA_ARGS="--config.train.batch_size=64")
  assert proc.returncode == 0, proc.stderr
  calls = _gcloud_calls(tmp_path)
  assert [c[:4] for c in calls] == [TPU[1:] + [v] for v in
                                    ("describe", "create", "describe", "scp", "ssh", "ssh", "ssh")]
  assert calls[0] == TPU[1:] + ["describe", "difai", "--zone", "us-central2-b",
                                "--format=value(state)"]
  assert calls[1] == TPU[1:] + ["create", "difai", "--zone", "us-central2-b",
                                "--accelerator-type", "v4-32", "--version", "tpu-ubuntu2204-base"]
  assert calls[3][4:] == [str(tmp_path / "difai-jax-difai.tar.gz"), "difai:difai-jax.tar.gz",
                          "--zone", "us-central2-b", "--worker=all"]
  assert all("--worker=all" in c for c in calls[3:6]) and "--worker=0" in calls[6]
  assert "--coordinator_address=10.1.2.3:8476" in _option(calls[5], "--command")
  # What the workers got: the committed tree, one pip call, a detached train run with a log.
  assert (remote_home / "difai-jax" / "configs" / "celebahq.py").read_text() == "# config\n"
  assert not (remote_home / "difai-jax.tar.gz").exists()
  pip_calls = (remote_home / "difai-venv" / "bin" / "pip_calls").read_text().splitlines()
  assert pip_calls == ["install -q -U pip",
                       f"install -q jax[tpu] -e {remote_home}/difai-jax[train]"]
  log = remote_home / "difai-logs" / "train.log"
  expected = ("fake python: -m difai_jax.train --config configs/celebahq.py --workdir "
              "gs://bucket/run --coordinator_address=10.1.2.3:8476 "
              "--config.train.batch_size=64")
  for _ in range(100):                                         # the run is in the background
    if expected in log.read_text():
      break
    time.sleep(0.05)
  assert expected in log.read_text()
  assert (remote_home / "difai-logs" / "train.pid").read_text().strip().isdigit()
  assert "Ctrl-C stops only this log stream" in proc.stderr


def test_real_run_reuses_a_ready_slice_and_stops_on_a_preempted_one(tmp_path, fakebin, checkout,
                                                                    remote_home):
  proc = _real(["--no-follow"], tmp_path, fakebin, checkout, WORKDIR="gs://b", FAKE_STATE="READY")
  assert proc.returncode == 0, proc.stderr
  assert [c[3] for c in _gcloud_calls(tmp_path)] == ["describe", "describe", "scp", "ssh", "ssh"]
  (tmp_path / "gcloud_calls").unlink()
  proc = _real([], tmp_path, fakebin, checkout, WORKDIR="gs://b", FAKE_STATE="PREEMPTED")
  assert proc.returncode == 1
  assert "is PREEMPTED" in proc.stderr and "--delete" in proc.stderr
  assert [c[3] for c in _gcloud_calls(tmp_path)] == ["describe"]


def test_delete_asks_unless_yes_and_logs_streams_worker_0(tmp_path, fakebin, checkout):
  proc = _real(["--delete"], tmp_path, fakebin, checkout, stdin="n\n")
  assert proc.returncode == 1 and "not deleted" in proc.stderr
  assert _gcloud_calls(tmp_path) == []
  proc = _real(["--delete", "--yes"], tmp_path, fakebin, checkout, PROJECT="p")
  assert proc.returncode == 0, proc.stderr
  assert _gcloud_calls(tmp_path) == [TPU[1:] + ["delete", "difai", "--zone", "us-central2-b",
                                                "--project", "p", "--quiet"]]
  (tmp_path / "gcloud_calls").unlink()
  proc = _real(["--logs"], tmp_path, fakebin, checkout, LOGS_WORKER="all")
  assert proc.returncode == 0, proc.stderr
  assert _gcloud_calls(tmp_path) == [TPU[1:] + [
      "ssh", "difai", "--zone", "us-central2-b", "--worker=all", "--command",
      'tail -n 100 -F "$HOME"/difai-logs/train.log']]
