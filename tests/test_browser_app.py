"""The browser demo end to end, in headless Chromium (benchmarks/browser_app_check.py).

A user's session: pick a toy face, press Inpaint before brushing (the page shows the app's
message), brush a hole with the mouse, K = 3 (known pixels exact, completions differ), K = 4
(no recompile, completions unchanged), Edit and Walk (equal to the completions they repeat), and
a large photo that is not square (a warning on the page, completions of its size).

Needs Debian's chromium and chromium-driver (``.ci/run`` installs them) and the test extra's
gradio and selenium; selenium uses /usr/bin/chromedriver, nothing is downloaded. Under
``CI=true`` a missing browser fails the test; elsewhere it skips, saying how to install one.
"""

import os

import pytest

from benchmarks import browser_app_check

CHROMEDRIVER = "/usr/bin/chromedriver"


def test_browser_demo_end_to_end(tmp_path):
  missing = browser_app_check.missing_requirements(CHROMEDRIVER)
  if missing:
    message = f"{missing}: {browser_app_check.INSTALL_HINT}"
    if os.environ.get("CI") == "true":
      pytest.fail(message)
    pytest.skip(message)
  args = browser_app_check.parser().parse_args([
      "--chromedriver", CHROMEDRIVER, "--screenshot", str(tmp_path / "screenshot.png"),
      "--timeout", "300"])
  try:
    report, timings = browser_app_check.check(args)
  except browser_app_check.CheckFailed as e:
    pytest.fail(f"browser check failed: {e}", pytrace=False)
  print("\n".join(report))
  print(", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items()))
  text = "\n".join(report)
  # Each step reported what it verified (a step that silently did nothing would be missing).
  for expected in ("Inpaint with no hole brushed: the page says 'brush the hole first",
                   "known pixels: all", "completions differ in the hole", "no recompile",
                   "Edit (direction 0, +d): known pixels exact", "Walk: 9 frames",
                   "large photo 1600x1000: the page warns", "completions 1600x1000"):
    assert expected in text, text
  assert os.path.getsize(tmp_path / "screenshot.png") < browser_app_check.SCREENSHOT_LIMIT


def test_a_failure_names_the_step_it_happened_in(monkeypatch, tmp_path):
  """A WebDriver exception (not a CheckFailed) reports the step of the user's session it broke,
  with the first line of the driver's message (not its native stack trace)."""
  def broken(args, timings):
    del timings
    args.step = "brushing the hole"
    raise RuntimeError("Message: element not interactable\nStacktrace:\n#0 0x55 <unknown>")
  monkeypatch.setattr(browser_app_check, "run_check", broken)
  args = browser_app_check.parser().parse_args(["--screenshot", str(tmp_path / "s.png")])
  with pytest.raises(browser_app_check.CheckFailed) as info:
    browser_app_check.check(args)
  assert str(info.value) == ("RuntimeError while brushing the hole: "
                             "Message: element not interactable")


def test_retrying_reruns_only_transient_errors_until_its_timeout():
  """The races with the page's rendering (a stale node, a covered button) are retried; any other
  error is raised at once; a transient one that outlasts the timeout is raised as it was."""
  calls = []
  def flaky():
    calls.append(1)
    if len(calls) < 3:
      raise LookupError("re-rendered")
    return "read"
  assert browser_app_check.retrying(flaky, (LookupError,), timeout=5.0, pause=0.0) == "read"
  assert len(calls) == 3
  def broken():
    calls.append(1)
    raise ValueError("not a race")
  calls.clear()
  with pytest.raises(ValueError, match="not a race"):
    browser_app_check.retrying(broken, (LookupError,), timeout=5.0, pause=0.0)
  assert len(calls) == 1
  def always_stale():
    raise LookupError("still re-rendered")
  with pytest.raises(LookupError, match="still re-rendered"):
    browser_app_check.retrying(always_stale, (LookupError,), timeout=0.05, pause=0.01)
