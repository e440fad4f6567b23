"""End-to-end check of the browser demo (``difai_jax/app.py``) in headless Chromium.

  python -m benchmarks.browser_app_check [--checkpoint toy-difai] [--chromedriver PATH]
      [--screenshot benchmarks/figures/app_screenshot.png] [--timeout 600]

Needs what the test suite cannot assume (so it is a command here, not a test): the ``app`` extra
and a browser, e.g. ``pip install -e ".[app]" selenium`` and ``apt-get install -y chromium
chromium-driver`` (Debian; chromedriver at /usr/bin/chromedriver).

What it does, as a user would:
  1. starts ``python -m difai_jax.app`` on a free port in a subprocess (fresh compilation cache,
     so the first click pays the compile, as on a new machine) and waits until it serves;
  2. opens the page through selenium, picks a toy example face, draws a hole with the editor's
     brush (a mouse drag on the canvas), sets K = 3 and presses "Inpaint";
  3. waits for the gallery, downloads the three completions and the mask the app used (PNG, the
     files the page shows), and asserts: each completion keeps every known pixel of the example
     face exactly (the face rendered here, so the browser round trip is checked too), the
     completions differ from each other inside the hole, and the hole is the drawn stroke;
  4. sets K = 4 and runs again (no compile; completions 0..2 unchanged), then presses "Edit"
     (direction 0, degree +d: the same edit as completion 1) and "Walk" (its middle frame is
     degree 0: completion 0), and checks both against the completions;
  5. saves a screenshot (palette PNG, < 300 KB);
  6. uploads a large photo that is not square (1600 x 1000), brushes a hole and presses
     "Inpaint": the page shows a note under the completions (the model sees it stretched; also
     a toast) and completions of the photo's size whose known pixels are the photo's; prints
     the timings.

Before the first hole is drawn it also presses "Inpaint" with no hole brushed: the page must
show the app's message (an error toast), never a stack trace, and the app keeps serving.

``tests/test_browser_app.py`` runs the same check on every CI run (``check``).

Exit status 0 when every check passes, 1 otherwise (the app's log tail is printed then).
"""

# pylint: disable=import-outside-toplevel
from __future__ import annotations

import argparse
import importlib.util
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SCREENSHOT = os.path.join(ROOT, "benchmarks", "figures", "app_screenshot.png")
SCREENSHOT_LIMIT = 300 * 1024
EXAMPLE = 1            # which toy example face to pick (index into app.EXAMPLE_INDICES)
K = 3
MIN_HOLE_DIFF = 1.0    # mean |a - b| (uint8 levels) between two completions inside the hole
LARGE_PHOTO = (1600, 1000)   # (width, height) of the photo that is not square


class CheckFailed(Exception):
  """A check did not hold; the message says which."""


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def start_app(checkpoint: str, port: int, cache: str, log_path: str,
              timeout: float) -> subprocess.Popen:
  """``python -m difai_jax.app`` in a subprocess, returned once the page answers."""
  env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False")
  log = open(log_path, "w", encoding="utf-8")  # pylint: disable=consider-using-with
  proc = subprocess.Popen(
      [sys.executable, "-m", "difai_jax.app", "--checkpoint", checkpoint, "--port", str(port),
       "--compilation_cache", cache], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
  deadline = time.time() + timeout
  while time.time() < deadline:
    if proc.poll() is not None:
      raise CheckFailed(f"the app exited with status {proc.returncode} before serving")
    try:
      with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
        if r.status == 200:
          return proc
    except OSError:
      pass
    time.sleep(1)
  raise CheckFailed(f"the app did not serve within {timeout:.0f} s")


def fetch_png(url: str) -> np.ndarray:
  with urllib.request.urlopen(url, timeout=30) as r:
    data = r.read()
  with Image.open(io.BytesIO(data)) as img:
    if img.format != "PNG":
      raise CheckFailed(f"{url} is {img.format}, not a lossless PNG")
    return np.asarray(img.convert("RGB"))


def retrying(action, transient: tuple[type[Exception], ...], timeout: float, pause: float):
  """``action()``, run again while it raises one of ``transient`` (a race with the page's
  rendering, not a failure) until ``timeout`` seconds have passed; then the last error."""
  deadline = time.time() + timeout
  while True:
    try:
      return action()
    except transient:
      if time.time() > deadline:
        raise
      time.sleep(pause)


def read_page(read):
  """``read()`` (which finds its elements itself), again while it meets an element the page
  re-rendered meanwhile (gradio replaces a gallery's or a toast's nodes as it updates them: a
  reference found a moment ago is stale)."""
  from selenium.common.exceptions import StaleElementReferenceException
  return retrying(read, (StaleElementReferenceException,), timeout=5.0, pause=0.25)


def _page_error(driver) -> str:
  """The text of gradio's error toast, if one shows."""
  from selenium.webdriver.common.by import By
  def read():
    toasts_now = driver.find_elements(By.CSS_SELECTOR, "[data-testid='toast-body']")
    return " | ".join(t.text.replace("\n", " ") for t in toasts_now if "rror" in t.text)
  return read_page(read)


def wait_for(driver, what: str, condition, timeout: float, poll: float = 0.5,
             fail_on_error: bool = True):
  """Polls ``condition()`` until truthy; fails early when the page shows an error."""
  deadline = time.time() + timeout
  while time.time() < deadline:
    value = condition()
    if value:
      return value
    error = _page_error(driver) if fail_on_error else ""
    if error:
      raise CheckFailed(f"waiting for {what}: the page shows an error: {error}")
    time.sleep(poll)
  raise CheckFailed(f"timed out after {timeout:.0f} s waiting for {what}")


def image_srcs(driver, selector: str) -> list[str]:
  from selenium.webdriver.common.by import By
  def read():
    srcs = [e.get_attribute("src") for e in driver.find_elements(By.CSS_SELECTOR, selector)]
    return [src for src in srcs if src]
  return read_page(read)


def click(driver, by: str, selector: str, index: int = 0, timeout: float = 15.0) -> None:
  """Clicks the ``index``-th element ``selector`` finds, as a user would, finding it again while
  it is briefly not clickable (covered by a toast that is fading out, or re-rendered by the page
  between finding and clicking): those clicks raise at once."""
  from selenium.common.exceptions import (ElementClickInterceptedException,
                                          ElementNotInteractableException,
                                          StaleElementReferenceException)
  retrying(lambda: driver.find_elements(by, selector)[index].click(),
           (ElementClickInterceptedException, ElementNotInteractableException,
            StaleElementReferenceException, IndexError), timeout=timeout, pause=0.5)


def save_screenshot(driver, path: str) -> int:
  """The page as a palette PNG (< 300 KB: the README shows it); returns its size in bytes."""
  shot = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  for scale in (1.0, 0.8, 0.65, 0.5):
    img = shot if scale == 1.0 else shot.resize(
        (int(shot.width * scale), int(shot.height * scale)), Image.LANCZOS)
    img.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    if os.path.getsize(path) < SCREENSHOT_LIMIT:
      break
  return os.path.getsize(path)


def check_known(name: str, image: np.ndarray, face: np.ndarray, known: np.ndarray) -> None:
  if image.shape != face.shape:
    raise CheckFailed(f"{name} is {image.shape}, the example face {face.shape}")
  changed = int((image[known] != face[known]).any(axis=-1).sum())
  if changed:
    raise CheckFailed(f"{name}: {changed} known pixels differ from the example face")


def toasts(driver, kind: str) -> list[str]:
  """The messages of gradio's toasts of ``kind`` (error / warning / info) now on the page."""
  from selenium.webdriver.common.by import By
  return read_page(lambda: [t.text.split("\n")[-1] for t in driver.find_elements(
      By.CSS_SELECTOR, f"[data-testid='toast-body'].{kind}")])


def notes_shown(driver) -> list[str]:
  """The app's notes under the completions (Markdown "**Note:** ..."), without the prefix."""
  from selenium.webdriver.common.by import By
  text = read_page(lambda: driver.find_element(By.ID, "input_notes").text)
  return [line.removeprefix("Note:").strip() for line in text.splitlines() if line.strip()]


def close_toasts(driver) -> None:
  """Closes the toasts on the page. Clicked through JavaScript: a toast that is fading out on
  its own has a close button the WebDriver refuses ("element not interactable")."""
  driver.execute_script(
      "document.querySelectorAll(\"[data-testid='toast-close']\").forEach(b => b.click());")
  time.sleep(0.5)


def editor_picture(driver) -> bytes:
  """What the image editor shows (a PNG of the element): its canvases do not say which image
  they hold."""
  from selenium.webdriver.common.by import By
  return read_page(lambda: driver.find_element(By.ID, "face_editor").screenshot_as_png)


def editor_settled(driver, before: bytes) -> bool:
  """Whether the editor shows something other than ``before``, unchanged over half a second
  (an upload's intermediate frames are not the photo yet)."""
  now = editor_picture(driver)
  if now == before:
    return False
  time.sleep(0.5)
  return editor_picture(driver) == now


def draw_stroke(driver) -> None:
  """A horizontal brush stroke (120 screen px) across the editor's canvas."""
  from selenium.webdriver.common.action_chains import ActionChains
  from selenium.webdriver.common.by import By
  brush = "#face_editor button[aria-label=Brush]"
  if "highlight" not in read_page(lambda: driver.find_element(By.CSS_SELECTOR, brush)
                                  .get_attribute("class") or ""):
    click(driver, By.CSS_SELECTOR, brush)
  def stroke():
    canvas = driver.find_elements(By.CSS_SELECTOR, "#face_editor canvas")[-1]
    chain = ActionChains(driver).move_to_element_with_offset(canvas, -60, 15).click_and_hold()
    for _ in range(12):
      chain = chain.move_by_offset(10, 0)
    chain.release().perform()
  read_page(stroke)


def set_k(driver, k: int) -> None:
  from selenium.webdriver.common.by import By
  from selenium.webdriver.common.keys import Keys
  def type_k():
    k_box = driver.find_element(By.CSS_SELECTOR, "#k_slider input[type=number]")
    k_box.send_keys(Keys.CONTROL, "a")
    k_box.send_keys(str(k), Keys.TAB)
  read_page(type_k)
  time.sleep(0.5)


def check_no_hole_message(driver, report: list[str]) -> None:
  """Inpaint before a hole is brushed: the app's message on the page, no stack trace."""
  from selenium.webdriver.common.by import By
  click(driver, By.ID, "run_button")
  # a toast appears before its text: wait for a message with words in it
  messages = wait_for(driver, "the no-hole message",
                      lambda: [m for m in toasts(driver, "error") if m], 60, fail_on_error=False)
  if not any("brush the hole" in m for m in messages):
    raise CheckFailed(f"Inpaint with no hole: the page says {messages}, not the app's message")
  if "Traceback" in driver.page_source:
    raise CheckFailed("Inpaint with no hole: the page shows a stack trace")
  close_toasts(driver)
  report.append(f"Inpaint with no hole brushed: the page says {messages[0]!r} (no trace)")


def check_large_photo(driver, work: str, k: int, timeout: float, report: list[str]) -> None:
  """A large photo that is not square: a warning on the page, completions of its size."""
  from selenium.webdriver.common.by import By
  from difai_jax.data import toy_faces
  photo = np.asarray(Image.fromarray(toy_faces.render_face(0, 28005, 256)).resize(
      LARGE_PHOTO, Image.BICUBIC))
  path = os.path.join(work, "large_photo.png")
  Image.fromarray(photo).save(path)
  before = editor_picture(driver)
  driver.find_element(By.CSS_SELECTOR, "#face_editor input[type=file]").send_keys(path)
  # Brushing before the upload lands would paint (and inpaint) the previous face.
  wait_for(driver, "the photo in the editor", lambda: editor_settled(driver, before), timeout)
  draw_stroke(driver)
  previous = image_srcs(driver, "#completions img")
  click(driver, By.ID, "run_button")
  # The warning toast may show before the completions or with them: collect toasts while
  # waiting (for the report; the check reads the note that stays under the completions).
  warnings: list[str] = []

  def warned() -> bool:
    warnings.extend(w for w in toasts(driver, "warning") if w and w not in warnings)
    return any("not square" in w for w in warnings)

  def completions_shown():
    # New images of the photo's size: gradio may also re-serve the previous completions under
    # new addresses while it updates the page.
    warned()
    srcs_now = image_srcs(driver, "#completions img")
    if len(srcs_now) != k or srcs_now == previous:
      return None
    try:
      return srcs_now if fetch_png(srcs_now[0]).shape == photo.shape else None
    except OSError:                 # the page replaced it as it was read
      return None
  srcs = wait_for(driver, f"{k} completions of the photo's size ({LARGE_PHOTO[0]}x"
                  f"{LARGE_PHOTO[1]})", completions_shown, timeout)
  # The note under the completions comes in the same update as they do and stays; the toast
  # (gradio closes it after 10 s) may come and go between two polls under load: reported only.
  notes = [n for n in notes_shown(driver) if "not square" in n]
  if not notes:
    raise CheckFailed(f"a {LARGE_PHOTO[0]}x{LARGE_PHOTO[1]} photo: no 'not square' note under "
                      f"the completions (notes: {notes_shown(driver)}; toasts: {warnings})")
  completion = fetch_png(srcs[0])
  known = fetch_png(image_srcs(driver, "#mask_used img")[0])[..., 0] > 127
  check_known("the large photo's completion 0", completion, photo, known)
  if known.all():
    raise CheckFailed("the large photo's mask has no hole: the stroke was not drawn")
  close_toasts(driver)
  toast = "and in a toast" if warned() else "its toast not seen"
  report.append(f"large photo {LARGE_PHOTO[0]}x{LARGE_PHOTO[1]}: the page warns "
                f"{notes[0]!r} (under the completions; {toast}); completions "
                f"{completion.shape[1]}x{completion.shape[0]}, known pixels exact, "
                f"{int((~known).sum())} hole px")


def run_check(args, timings: dict) -> list[str]:
  """The whole check; returns the lines of its report (raises CheckFailed)."""
  from selenium import webdriver
  from selenium.webdriver.chrome.service import Service
  from selenium.webdriver.common.by import By
  sys.path.insert(0, ROOT)
  from difai_jax import app
  report = []
  face = app.example_faces()[EXAMPLE]

  work = tempfile.mkdtemp(prefix="difai_browser_check_")
  port = free_port()
  log_path = os.path.join(work, "app.log")
  args.log_path = log_path
  t0 = time.time()
  proc = start_app(args.checkpoint, port, os.path.join(work, "jax_cache"), log_path,
                   args.timeout)
  args.proc = proc
  timings["app start (load models, serve)"] = time.time() - t0

  options = webdriver.ChromeOptions()
  for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
               "--window-size=1320,1680", "--hide-scrollbars"):
    options.add_argument(flag)
  if args.chromium:
    options.binary_location = args.chromium
  driver = webdriver.Chrome(service=Service(args.chromedriver), options=options)
  args.driver = driver
  t0 = time.time()
  driver.get(f"http://127.0.0.1:{port}/")
  items = wait_for(driver, "the example faces", lambda: driver.find_elements(
      By.CSS_SELECTOR, "#toy_examples button.gallery-item img"), 120)
  timings["page load"] = time.time() - t0
  if len(items) < len(app.EXAMPLE_INDICES):
    raise CheckFailed(f"{len(items)} example faces on the page, expected "
                      f"{len(app.EXAMPLE_INDICES)}")

  # Pick a toy face; draw a hole with the brush.
  args.step = "picking an example face"
  click(driver, By.CSS_SELECTOR, "#toy_examples button.gallery-item img", EXAMPLE)
  wait_for(driver, "the face in the editor", lambda: driver.find_elements(
      By.CSS_SELECTOR, "#face_editor button[aria-label=Color]"), 60)
  time.sleep(1.0)
  args.step = "Inpaint with no hole brushed"
  check_no_hole_message(driver, report)
  args.step = "brushing the hole"
  draw_stroke(driver)
  report.append("mask: drawn with the brush (a mouse drag on the editor's canvas)")
  args.step = f"setting K = {K}"
  set_k(driver, K)

  args.step = f"Inpaint, K = {K}"
  t0 = time.time()
  click(driver, By.ID, "run_button")
  srcs = wait_for(driver, f"{K} completions in the gallery", lambda: (
      image_srcs(driver, "#completions img") if len(image_srcs(driver, "#completions img")) >= K
      and image_srcs(driver, "#mask_used img") else None), args.timeout)
  timings[f"first Inpaint, K = {K} (compiles)"] = time.time() - t0
  if len(srcs) != K:
    raise CheckFailed(f"the gallery shows {len(srcs)} images, expected {K}")
  completions = [fetch_png(s) for s in srcs]
  mask = fetch_png(image_srcs(driver, "#mask_used img")[0])
  known = mask[..., 0] > 127
  hole = ~known
  fraction = hole.mean()
  if not 0.005 < fraction < 0.5:
    raise CheckFailed(f"the hole covers {100 * fraction:.2f}% of the face; the stroke should "
                      "give a band of a few percent")
  rows, cols = np.nonzero(hole)
  report.append(f"hole: {hole.sum()} px ({100 * fraction:.1f}%), rows {rows.min()}..{rows.max()}"
                f", columns {cols.min()}..{cols.max()} of {face.shape[1]}x{face.shape[0]}")
  for j, completion in enumerate(completions):
    check_known(f"completion {j}", completion, face, known)
  report.append(f"known pixels: all {int(known.sum())} equal the example face in each of the "
                f"{K} completions")
  diffs = []
  for a in range(K):
    for b in range(a + 1, K):
      diff = float(np.abs(completions[a][hole].astype(np.int16) - completions[b][hole]).mean())
      diffs.append(diff)
      if diff < MIN_HOLE_DIFF:
        raise CheckFailed(f"completions {a} and {b} differ by only {diff:.2f} levels in the hole")
  report.append("completions differ in the hole: mean |a - b| = "
                + ", ".join(f"{d:.1f}" for d in diffs) + " levels (pairs 01, 02, 12)")

  # K = 4: the same compiled program (the app pads every call to one number of edits), and
  # the first three completions do not change with K.
  args.step = f"Inpaint, K = {K + 1}"
  set_k(driver, K + 1)
  t0 = time.time()
  click(driver, By.ID, "run_button")
  srcs = wait_for(driver, f"{K + 1} completions", lambda: (
      image_srcs(driver, "#completions img")
      if len(image_srcs(driver, "#completions img")) == K + 1 else None),
                  args.timeout, poll=0.1)
  timings[f"second Inpaint, K = {K + 1} (compiled)"] = time.time() - t0
  more = [fetch_png(s) for s in srcs]
  gap = max(int(np.abs(a.astype(np.int16) - b).max()) for a, b in zip(completions, more))
  if gap > 2:
    raise CheckFailed(f"completions 0..{K - 1} changed by {gap} levels with K = {K + 1}")
  report.append(f"K = {K + 1}: completions 0..{K - 1} unchanged (max gap {gap}), no recompile")

  if not args.skip_sefa:
    args.step = "Edit"
    t0 = time.time()
    click(driver, By.ID, "edit_button")
    edited_src = wait_for(driver, "the edited completion",
                          lambda: image_srcs(driver, "#edited img"), args.timeout)
    timings["Edit"] = time.time() - t0
    edited = fetch_png(edited_src[0])
    check_known("the edited completion", edited, face, known)
    # Default sliders: direction 0, degree +d = completion 1's edit.
    gap = int(np.abs(edited.astype(np.int16) - completions[1]).max())
    if gap > 2:
      raise CheckFailed(f"Edit (direction 0, +d) differs from completion 1 by {gap} levels")
    report.append(f"Edit (direction 0, +d): known pixels exact, max |edit - completion 1| = {gap}")
    args.step = "Walk"
    t0 = time.time()
    click(driver, By.ID, "walk_button")
    walk_srcs = wait_for(driver, "the walk", lambda: (
        image_srcs(driver, "#walk_strip img") if image_srcs(driver, "#walk_strip img")
        and image_srcs(driver, "#walk_gif img") else None), args.timeout)
    timings["Walk (9 frames)"] = time.time() - t0
    strip = fetch_png(walk_srcs[0])
    size, pad, steps = face.shape[0], 2, 9
    if strip.shape[:2] != (size + 2 * pad, steps * (size + pad) + pad):
      raise CheckFailed(f"the walk strip is {strip.shape[1]}x{strip.shape[0]}, expected "
                        f"{steps} frames of {size} px")
    frames = [strip[pad:pad + size, pad + i * (size + pad):pad + i * (size + pad) + size]
              for i in range(steps)]
    for i, frame in enumerate(frames):
      check_known(f"walk frame {i}", frame, face, known)
    gap = int(np.abs(frames[steps // 2].astype(np.int16) - completions[0]).max())
    if gap > 2:
      raise CheckFailed(f"the walk's degree-0 frame differs from completion 0 by {gap} levels")
    report.append(f"Walk: {steps} frames, known pixels exact, max |frame 4 (degree 0) - "
                  f"completion 0| = {gap}; GIF shown")

  args.step = "screenshot"
  driver.execute_script("window.scrollTo(0, 0)")
  time.sleep(0.5)
  nbytes = save_screenshot(driver, args.screenshot)
  report.append(f"screenshot: {os.path.relpath(args.screenshot, ROOT)} ({nbytes / 1024:.0f} KB)")

  args.step = "the large photo"
  t0 = time.time()
  check_large_photo(driver, work, K + 1, args.timeout, report)
  timings[f"large photo, K = {K + 1}"] = time.time() - t0
  return report


INSTALL_HINT = ('apt-get install -y chromium chromium-driver; pip install -e ".[test]" (gradio '
                "and selenium)")


def missing_requirements(chromedriver: str = "/usr/bin/chromedriver") -> str | None:
  """What this check needs and cannot find (None when everything is there)."""
  if not os.path.exists(chromedriver):
    return f"no chromedriver at {chromedriver}"
  for module in ("gradio", "selenium"):
    if importlib.util.find_spec(module) is None:
      return f"the Python package {module} is missing"
  return None


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="python -m benchmarks.browser_app_check",
                              description=__doc__.split("\n", maxsplit=1)[0])
  p.add_argument("--checkpoint", default="toy-difai")
  p.add_argument("--chromedriver", default="/usr/bin/chromedriver")
  p.add_argument("--chromium", default=None,
                 help="browser binary (default: the one chromedriver finds)")
  p.add_argument("--screenshot", default=DEFAULT_SCREENSHOT)
  p.add_argument("--timeout", type=float, default=600.0,
                 help="seconds to wait for the app to start and for each click's result")
  p.add_argument("--skip_sefa", "--skip-sefa", action="store_true",
                 help="stop after the K completions (no Edit / Walk)")
  return p


def check(args) -> tuple[list[str], dict[str, float]]:
  """Runs the whole check (app, browser, clicks) and cleans up after it; returns the report's
  lines and the timings. Raises CheckFailed, with the app log's tail, when a check fails."""
  args.proc = args.driver = args.log_path = None
  args.step = "starting the app and the browser"
  timings: dict[str, float] = {}
  t_all = time.time()
  try:
    report = run_check(args, timings)
  except Exception as e:  # pylint: disable=broad-except
    tail = ""
    if args.log_path and os.path.exists(args.log_path):
      with open(args.log_path, encoding="utf-8") as f:
        tail = "\napp log (tail):\n" + "".join(f.readlines()[-30:])
    what = str(e) if isinstance(e, CheckFailed) else (
        f"{type(e).__name__} while {args.step}: {str(e).splitlines()[0] if str(e) else ''}")
    raise CheckFailed(what + tail) from e
  finally:
    if args.driver is not None:
      args.driver.quit()
    if args.proc is not None:
      args.proc.terminate()
      try:
        args.proc.wait(timeout=20)
      except subprocess.TimeoutExpired:
        args.proc.kill()
  timings["total"] = time.time() - t_all
  return report, timings


def main(argv=None) -> int:
  args = parser().parse_args(argv)
  missing = missing_requirements(args.chromedriver)
  if missing:
    print(f"error: {missing} ({INSTALL_HINT}, or pass --chromedriver)", file=sys.stderr)
    return 1
  try:
    report, timings = check(args)
  except CheckFailed as e:
    print(f"FAILED: {e}\nbrowser check: FAILED")
    return 1
  for line in report:
    print(line)
  for name, seconds in timings.items():
    print(f"  {name:38s} {seconds:7.1f} s")
  print("browser check: PASSED")
  return 0


if __name__ == "__main__":
  sys.exit(main())
