"""Training: losses go down, data parallelism and multi-process runs agree, resume is exact,
SIGTERM saves, a NaN stops cleanly, and a workdir of another architecture is refused.

Everything runs the tiny config (tests/tiny_config.py: 32 px toy faces, narrow networks, random
frozen pSp / VGG). Runs that need fresh XLA flags or real processes go through subprocesses.
"""

import functools
import gc
import os
import re
import signal
import socket
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from difai_jax.training import checkpoints
from difai_jax import pipeline
from difai_jax import sefa as sefa_lib
from difai_jax.training import steps
from difai_jax.training import loop as train
from difai_jax.data import loader as data_pipeline
from difai_jax.training.stages import inpainting
from difai_jax.models import coarse as coarse_lib
from difai_jax.models import critic as critic_lib
from difai_jax.models import sparn as sparn_lib
from tests import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "tests", "tiny_config.py")


def _env(devices: int = 1) -> dict:
  env = dict(os.environ)
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  flags = [f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f]
  flags += [f"--xla_force_host_platform_device_count={devices}",
            "--xla_cpu_collective_call_terminate_timeout_seconds=20"]
  env["XLA_FLAGS"] = " ".join(flags)
  env["TF_CPP_MIN_LOG_LEVEL"] = "3"
  return env


def _train_cmd(workdir, *overrides):
  return [sys.executable, "-m", "difai_jax.train", f"--config={CONFIG}", f"--workdir={workdir}",
          *overrides]


def _run(cmd, devices=1, timeout=300):
  proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(devices), cwd=ROOT,
                        timeout=timeout)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return proc.stdout


def _checksums(stdout):
  return {m.group(1): float(m.group(2))
          for m in re.finditer(r"\[(\w+)\] params checksum (\S+)", stdout)}


def _params(workdir):
  params, _ = checkpoints.load_stage_params(workdir, use_ema=False)
  return params


def _max_diff(a, b):
  return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


# ---- losses go down on a fixed batch (pure step functions, in process) ----

@pytest.fixture(scope="module")
def fixed_batch():
  config = tiny_config.get_config()
  it = data_pipeline.make_train_iterator(config.data, image_size=32, global_batch_size=4,
                                         seed=0, process_index=0, process_count=1,
                                         verbose=False)
  return {k: jnp.asarray(v) for k, v in next(it).items()}


def _run_steps(step_fn, state, batch, frozen, n):
  """n steps on one batch with one rng: a fixed objective (same SeFa edits every step)."""
  step_fn = jax.jit(step_fn)
  history = []
  for _ in range(n):
    state, metrics = step_fn(state, batch, frozen, steps.prng_key(1))
    history.append(jax.device_get(metrics))
  return state, history


def test_coarse_stage_lowers_its_loss(fixed_batch):
  config = tiny_config.get_config()
  config.train.ema_decay = 0.9
  coarse = coarse_lib.from_config(config.coarse)
  tx = steps.adam(1e-3, 0.5, 0.99)
  shape = (1, 32, 32, 3)
  state = jax.jit(functools.partial(
      steps.init_state, coarse, (jnp.zeros(shape), jnp.ones(shape[:3] + (1,))), None, shape,
      tx, tx, use_ema=True))(steps.prng_key(0))
  cfg = inpainting.step_config(config)
  fn = functools.partial(steps.coarse_train_step, coarse=coarse, critic=None, g_tx=tx, d_tx=tx,
                         cfg=cfg)
  state, history = _run_steps(fn, state, fixed_batch, {}, 20)
  losses = [h["coarse/loss"] for h in history]
  print("coarse loss first/last:", losses[0], losses[-1])
  assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3])
  assert int(state.step) == 20
  # EMA moved towards the params but lags them
  assert 0 < _max_diff(state.ema_params, state.params) < _max_diff(
      jax.tree.map(jnp.zeros_like, state.params), state.params)


def test_difai_stage_lowers_its_loss(fixed_batch):
  # L_per / L_style through the tiny config's random VGG-19; the toy recognizer's taps (what
  # the shipped toy DiFAI trains with) feed the same losses: test_recognizer descends them.
  config = tiny_config.get_config()
  psp, psp_vars = checkpoints.load_pretrained(config, "psp")
  vgg, vgg_vars = checkpoints.load_feature_net(config)
  coarse = coarse_lib.from_config(config.coarse)
  shape = (1, 32, 32, 3)
  coarse_vars = jax.jit(coarse.init)(steps.prng_key(3), jnp.zeros(shape),
                                     jnp.ones(shape[:3] + (1,)))
  generator = sparn_lib.from_config(config.generator)
  critic = critic_lib.from_config(config.critic)
  g_tx, d_tx = steps.adam(1e-3, 0.5, 0.99), steps.adam(1e-3, 0.5, 0.99)
  state = jax.jit(functools.partial(
      steps.init_state, generator, (jnp.zeros(shape), jnp.zeros(shape),
                                    jnp.ones(shape[:3] + (1,))),
      critic, shape, g_tx, d_tx, use_ema=False))(steps.prng_key(0))
  frozen = {"coarse": coarse_vars, "psp": psp_vars, "vgg": vgg_vars,
            "sefa": sefa_lib.factorize(psp_vars["params"]["decoder"]).directions}
  models = pipeline.Models(coarse, psp, generator, 32)
  cfg = inpainting.step_config(config)
  fn = functools.partial(steps.difai_train_step, models=models, critic=critic, vgg=vgg,
                         g_tx=g_tx, d_tx=d_tx, cfg=cfg)
  state, history = _run_steps(fn, state, fixed_batch, frozen, 20)
  rec = [h["g/hole"] + h["g/valid"] for h in history]
  total = [h["g/total"] for h in history]
  print("difai hole+valid first/last:", rec[0], rec[-1], "total:", total[0], total[-1])
  assert np.mean(rec[-3:]) < 0.8 * np.mean(rec[:3])
  assert np.mean(total[-3:]) < np.mean(total[:3])
  assert all(np.isfinite(h["critic/gradient_penalty"]) for h in history)
  assert int(state.step) == 20


# ---- in-process runs of train_stage ----

def _coarse_only(**train_overrides):
  config = tiny_config.get_config()
  config.stages = ("coarse",)
  for k, v in train_overrides.items():
    setattr(config.train, k, v)
  return config


def test_nan_stops_cleanly_with_checkpoint_intact(tmp_path, monkeypatch):
  original = steps.coarse_train_step

  def poisoned(state, batch, frozen, rng, **kw):
    new_state, metrics = original(state, batch, frozen, rng, **kw)
    bad = jnp.where(state.step >= 2, jnp.nan, 1.0)    # the third step's loss is NaN
    return new_state, {**metrics, "coarse/loss": metrics["coarse/loss"] * bad}

  monkeypatch.setattr(steps, "coarse_train_step", poisoned)
  config = _coarse_only(checkpoint_every=2)
  config.train.num_steps = {"coarse": 6, "difai": 1}
  with pytest.raises(train.NonFiniteLossError, match=r"step 3.*coarse/loss"):
    train.run(config, str(tmp_path))
  meta = checkpoints.latest_meta(str(tmp_path))
  assert meta["step"] == 2
  params = _params(str(tmp_path))
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(params))


def test_workdir_of_another_architecture_is_refused(tmp_path, monkeypatch):
  config = _coarse_only()
  config.train.num_steps = {"coarse": 1, "difai": 1}
  monkeypatch.chdir(tmp_path.parent)
  train.run(config, tmp_path.name)                 # a relative workdir, as README's demo uses
  other = _coarse_only()
  other.train.num_steps = {"coarse": 2, "difai": 1}
  other.coarse.widths = (8, 8, 16, 32)
  with pytest.raises(checkpoints.WorkdirMismatchError, match="coarse"):
    train.run(other, str(tmp_path))
  assert checkpoints.latest_meta(str(tmp_path))["step"] == 1   # untouched


# ---- subprocess runs ----

def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _first_loss(workdir: str, name: str) -> float:
  """The stage's step-1 loss as its TensorBoard file holds it (float32, not the log's 4 digits)."""
  acc = event_accumulator.EventAccumulator(workdir)
  acc.Reload()
  return next(e.value for e in acc.Scalars(f"{name}/loss") if e.step == 1)


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
  """The DiFAI stage (generator, critic, frozen coarse net / pSp / VGG / SeFa), 2 steps over 2
  processes of 2 CPU devices each: one 4-device data parallel mesh across two hosts, as on a
  TPU pod slice. Its coarse net is the session's tiny run's (the coarse stage's own GAN state
  is split over 4 devices in test_data_parallel_matches_one_device). Returns (run dir, each
  process's output)."""
  from tests.test_evaluate import trained_tiny_run  # pylint: disable=import-outside-toplevel
  coarse = trained_tiny_run(tmp_path_factory)
  workdir = tmp_path_factory.mktemp("two_processes") / "run"
  port = _free_port()
  procs = [subprocess.Popen(
      _train_cmd(workdir, f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
                 f"--process_id={i}", "--config.stages=('difai',)",
                 f"--config.pretrained.coarse_workdir={coarse}",
                 "--config.train.num_steps.difai=2"),
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(2), cwd=ROOT)
      for i in range(2)]
  outs = []
  try:
    for p in procs:
      outs.append(p.communicate(timeout=400)[0])
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-3000:]
  return workdir, outs


def test_two_processes_train_in_lockstep(two_process_run):
  workdir, outs = two_process_run
  assert "devices: 4 (cpu) over 2 process(es)" in outs[0], outs[0][-3000:]
  sums = [_checksums(o) for o in outs]
  print("per-process params checksums:", sums)
  assert set(sums[0]) == {"difai"}
  assert sums[0] == sums[1]
  assert checkpoints.latest_meta(str(workdir))["step"] == 2


def test_data_parallel_matches_one_device(tmp_path):
  # The first step's loss (same initial params, same global batch, split over 4 devices or
  # not) must agree. Later steps are not compared: MLGN's InstanceNorms over 2x2 maps at this
  # tiny size amplify reduction-order rounding (and Adam turns the zero-in-exact-arithmetic
  # gradients of the conv biases before each InstanceNorm into lr-sized steps), so parameters
  # of the two runs drift apart chaotically without either being wrong. (Several processes
  # read different shards, so their global batch is another one: not compared here.)
  out4 = _run(_train_cmd(tmp_path / "four", "--config.stages=('coarse',)",
                         "--config.coarse.lambda_adv=0.1", "--config.train.num_steps.coarse=1"),
              devices=4)
  assert "devices: 4 (cpu) over 1 process(es)" in out4
  config = tiny_config.get_config()
  config.stages = ("coarse",)
  config.coarse.lambda_adv = 0.1
  config.train.num_steps = {"coarse": 1, "difai": 1}
  assert jax.device_count() == 1
  train.run(config, str(tmp_path / "one"))              # in this process: one device
  one, four = _first_loss(str(tmp_path / "one"), "coarse"), _first_loss(str(tmp_path / "four"),
                                                                        "coarse")
  print(f"data parallel (4 devices) vs 1 device: first-step loss {four} vs {one}")
  assert four == pytest.approx(one, rel=1e-5)


def _wait_for_checkpoint(workdir, proc, timeout=120):
  directory = os.path.join(workdir, "checkpoints")
  t0 = time.time()
  while time.time() - t0 < timeout:
    if os.path.isdir(directory) and any(d.isdigit() for d in os.listdir(directory)):
      return
    if proc.poll() is not None:
      raise AssertionError("training exited before its first checkpoint: "
                           + proc.stdout.read()[-3000:])
    time.sleep(0.05)
  raise AssertionError("no checkpoint appeared")


def test_kill9_then_resume_is_bit_identical(tmp_path):
  cache = tmp_path / "jax_cache"      # the run's compiled step is kept for the resumed run
  common = ["--config.stages=('coarse',)", "--config.train.checkpoint_every=3",
            "--config.train.keep_checkpoints=10", f"--compilation_cache={cache}"]
  victim = tmp_path / "victim"
  proc = subprocess.Popen(_train_cmd(victim, *common, "--config.train.num_steps.coarse=100000"),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=_env(), cwd=ROOT)
  try:
    _wait_for_checkpoint(str(victim), proc)
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  saved = checkpoints.latest_meta(str(victim))["step"]
  assert any(name.startswith("jit_") for name in os.listdir(cache)), os.listdir(cache)
  # resume: exactly one more step, then compare with an uninterrupted run of saved + 1 steps
  out = _run(_train_cmd(victim, *common, f"--config.train.num_steps.coarse={saved + 1}"))
  assert f"resuming {victim} from step {saved}" in out
  _run(_train_cmd(tmp_path / "straight", *common,
                  f"--config.train.num_steps.coarse={saved + 1}"))
  a, b = _params(victim), _params(tmp_path / "straight")
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _start_and_signal(workdir, signals, hold_save_s=0.0):
  """Starts a long coarse run, sends ``signals`` once steps run, each after the run has
  reported the one before (``hold_save_s``: the loop's test hook that keeps the save after an
  interruption pending that long); returns (returncode, output)."""
  env = {**_env(), train.HOLD_SAVE_ENV: str(hold_save_s)}
  proc = subprocess.Popen(
      _train_cmd(workdir, "--config.stages=('coarse',)", "--config.train.checkpoint_every=100000",
                 "--config.train.num_steps.coarse=100000"),
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
  seen = []
  try:
    for line in proc.stdout:                      # wait until steps are running
      seen.append(line)
      if "[coarse] step 3/" in line:
        break
    for i, sig in enumerate(signals):
      proc.send_signal(sig)
      if i + 1 < len(signals):                    # the handler ran: the next one is a second
        for line in proc.stdout:
          seen.append(line)
          if "interrupted:" in line:
            break
    out = "".join(seen) + proc.communicate(timeout=120)[0]
  finally:
    if proc.poll() is None:
      proc.kill()
  return proc.returncode, out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_ctrl_c_save_a_checkpoint_and_exit_75(tmp_path, sig):
  workdir = tmp_path / "run"
  code, out = _start_and_signal(workdir, [sig])
  assert code == train.EXIT_PREEMPTED, out[-3000:]
  assert f"{sig.name}: saved step" in out
  assert "Traceback" not in out
  step = checkpoints.latest_meta(str(workdir))["step"]
  assert 3 <= step < 100000
  # and the run resumes from there
  resumed = _run(_train_cmd(workdir, "--config.stages=('coarse',)",
                            f"--config.train.num_steps.coarse={step + 1}"))
  assert f"resuming {workdir} from step {step}" in resumed


def test_second_ctrl_c_stops_at_once(tmp_path):
  # The second Ctrl-C arrives while the first one's save is held open: 130, nothing saved.
  code, out = _start_and_signal(tmp_path / "run", [signal.SIGINT, signal.SIGINT],
                                hold_save_s=30.0)
  assert code == 130, out[-3000:]
  assert "saved step" not in out and "Traceback" not in out
  assert not (tmp_path / "run" / "checkpoints").exists() or not any(
      d.isdigit() for d in os.listdir(tmp_path / "run" / "checkpoints"))


def test_bad_workdir_and_missing_data_fail_first_and_write_nothing(tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("x")
  proc = subprocess.run(_train_cmd(blocker / "run"), capture_output=True, text=True,
                        env=_env(), cwd=ROOT, timeout=120)
  assert proc.returncode == 1
  assert f"{blocker} is a file, not a folder" in proc.stderr
  assert "Traceback" not in proc.stderr
  workdir = tmp_path / "run"
  proc = subprocess.run(_train_cmd(workdir, "--config.stages=('coarse',)",
                                   "--config.data.source=folder",
                                   f"--config.data.path={tmp_path / 'no_such_folder'}"),
                        capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=120)
  assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
  assert "no_such_folder" in proc.stderr
  assert "Traceback" not in proc.stderr
  assert not workdir.exists()


def test_bfloat16_compute_keeps_float32_params_and_optimizer_state(fixed_batch):
  config = tiny_config.get_config()
  config.coarse.dtype = "bfloat16"
  coarse = coarse_lib.from_config(config.coarse)
  tx = steps.adam(1e-3, 0.5, 0.99)
  shape = (1, 32, 32, 3)
  state = jax.jit(functools.partial(
      steps.init_state, coarse, (jnp.zeros(shape), jnp.ones(shape[:3] + (1,))), None, shape,
      tx, tx, use_ema=False))(steps.prng_key(0))
  fn = functools.partial(steps.coarse_train_step, coarse=coarse, critic=None, g_tx=tx, d_tx=tx,
                         cfg=inpainting.step_config(config))
  state, history = _run_steps(fn, state, fixed_batch, {}, 3)
  assert all(np.isfinite(h["coarse/loss"]) for h in history)
  floats = [x for x in jax.tree.leaves((state.params, state.opt_state))
            if jnp.issubdtype(x.dtype, jnp.floating)]
  assert floats and all(x.dtype == jnp.float32 for x in floats)


def test_a_second_ctrl_c_inside_a_gc_callback_is_sent_again():
  """Raised inside a gc callback (JAX registers one), a KeyboardInterrupt is only printed: the
  handler sends the signal again a moment later instead, so the run still stops at once, with
  no trace. The callback is recognised by being in gc.callbacks, whatever its name."""
  def called_by_the_callback():
    return sys._getframe()                            # pylint: disable=protected-access
  frames = []
  def some_callback(phase, info):                     # pylint: disable=unused-argument
    frames.append(called_by_the_callback())           # a frame below the callback's own
  interruption = train._Interruption()  # pylint: disable=protected-access
  handle = interruption._handle                        # pylint: disable=protected-access
  try:
    interruption.requested = "SIGINT"                  # the first Ctrl-C came
    # Outside any gc callback the second Ctrl-C raises at once.
    with pytest.raises(KeyboardInterrupt):
      handle(signal.SIGINT, called_by_the_callback())
    some_callback("start", {})
    gc.callbacks.append(some_callback)
    try:
      handle(signal.SIGINT, frames[0])
    finally:
      gc.callbacks.remove(some_callback)
    assert interruption.abort
    with pytest.raises(KeyboardInterrupt):
      time.sleep(5)                                    # the signal, sent again, lands here
  finally:
    interruption.close()


def test_a_resume_names_a_frozen_network_replaced_since_the_run_started():
  recorded = {"psp": "toy-psp", "psp_fingerprint": "aaaa", "psp_decoder_fingerprint": "bbbb"}
  assert train.replaced_networks(recorded, dict(recorded)) == ""
  assert train.replaced_networks(None, recorded) == ""             # a run from before records
  assert train.replaced_networks({"init_from": "x", "kimg_total": 1.0},
                                 {"init_from": "x", "kimg_total": 2.0}) == ""   # no fingerprint
  warning = train.replaced_networks(recorded, {**recorded, "psp_fingerprint": "cccc"})
  assert warning.startswith("psp_fingerprint aaaa -> cccc since the run started")
  # a resume keeps the first start's record unless a network was replaced: then the record
  # names the one the run trains against from now on and lists what it replaced
  assert train.resumed_provenance(recorded, dict(recorded)) == (recorded, "")
  assert train.resumed_provenance(None, recorded) == (None, "")
  now = {"psp": "runs/psp_b", "psp_fingerprint": "cccc", "psp_decoder_fingerprint": "bbbb"}
  record, warning = train.resumed_provenance(recorded, now)
  assert warning.startswith("psp_fingerprint aaaa -> cccc")
  assert record == {**now, "replaced": [recorded]}
  record, _ = train.resumed_provenance(record, {**now, "psp": "c", "psp_fingerprint": "dddd"})
  assert record["psp_fingerprint"] == "dddd" and record["replaced"] == [recorded, now]
