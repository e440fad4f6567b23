"""Browser demo of diverse facial inpainting: ``python -m difai_jax.app``.

    pip install -e ".[app]"
    python -m difai_jax.app [--checkpoint toy-difai] [--port 7860] [--share]

Open http://127.0.0.1:7860, upload a face or pick a toy face, brush the hole, choose K and press
"Inpaint": a gallery of K completions (0 follows the unperturbed style image, j >= 1 a SeFa edit,
as ``python -m difai_jax.inpaint``; with ``--edits labelled``, the least labelled attribute
edit a recognizer reads, captioned with what it changed). The SeFa sliders give one completion
moved along a chosen direction by a chosen degree (eq. 3), and "Walk" a strip and a GIF of a
continuous walk along it (Fig. 4). Known pixels stay bit-exact: every image is composited
with the input's known pixels (``outputs.composite_uint8``) and sent to the browser as PNG.

``--checkpoint`` is the shipped ``toy-difai`` by default, or any trained DiFAI workdir. The
models are loaded once, at start (:class:`difai_jax.inference.inpainter.Inpainter`); this module
only wires
the widgets to it. Every call runs the same number of SeFa edits (``--one_compile``, padding
with degree-0 edits whose outputs are dropped), so the pipeline compiles once, at the first
click (tens of seconds on a CPU; ``--warmup`` does it before the page opens), and is kept in
JAX's persistent compilation cache for the next start.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
import uuid

import numpy as np

from difai_jax import cli
from difai_jax import runtime
from difai_jax.data import image_io
from difai_jax.data import toy_faces

# The toy faces offered as examples: held-out indices (>= 28,000, never drawn by training), seed 0.
EXAMPLE_SEED = 0
EXAMPLE_INDICES = (28000, 28001, 28002, 28003, 28004)
EXAMPLE_SIZE = 256       # shown larger than the toy model's 64 px; the model sees them resized
MAX_K = 8
BRUSH_COLOR = "#ff00ff"
BRUSH_SIZE = 14          # px radius on the image (the editor has a size slider too)
MAX_DEGREE = 15.0


def example_faces(size: int = EXAMPLE_SIZE) -> list[np.ndarray]:
  """The example toy faces, (size, size, 3) uint8 each, in ``EXAMPLE_INDICES`` order."""
  return [toy_faces.render_face(EXAMPLE_SEED, i, size) for i in EXAMPLE_INDICES]


def editor_inputs(value: dict | None) -> tuple[np.ndarray, np.ndarray]:
  """An ImageEditor value (numpy, RGBA) -> ``(image (H, W, 3) uint8, known (H, W) bool)``.

  The face is the background (a transparent one composited on white, as image files are read);
  the hole is every pixel any brush layer painted (alpha > 0).

  Raises:
    ValueError: no face yet, or no hole brushed.
  """
  background = None if value is None else value.get("background")
  if background is None:
    raise ValueError("upload a face or pick a toy face first")
  background = np.asarray(background)
  if background.ndim == 2:
    background = np.repeat(background[..., None], 3, axis=-1)
  if background.shape[-1] == 4:
    alpha = background[..., 3:].astype(np.float32) / 255.0
    rgb = background[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
    image = np.round(rgb).astype(np.uint8)
  else:
    image = background[..., :3].astype(np.uint8)
  hole = np.zeros(image.shape[:2], bool)
  for layer in value.get("layers") or []:
    layer = np.asarray(layer)
    if layer.shape[:2] != hole.shape:
      raise ValueError(f"a brush layer is {layer.shape[1]}x{layer.shape[0]} but the face is "
                       f"{hole.shape[1]}x{hole.shape[0]}; load the face again and brush on it")
    if layer.ndim == 3 and layer.shape[-1] == 4:
      hole |= layer[..., 3] > 0
    else:
      hole |= (layer.reshape(layer.shape[:2] + (-1,)) > 0).any(axis=-1)
  if not hole.any():
    raise ValueError("brush the hole first: paint over the part of the face to fill in")
  return image, ~hole


def input_notes(inpainter, image: np.ndarray) -> list[str]:
  """What the page tells about a face the model sees distorted (not square, far too small)."""
  return inpainter.notes(image, name="the face", prefix="")


def notes_markdown(notes: list[str]) -> str:
  """The input notes as the Markdown shown under the completions (a toast fades; this stays
  until the next Inpaint)."""
  return "\n\n".join(f"**Note:** {note}" for note in notes)


def walk_outputs(frames: list[np.ndarray], folder: str,
                 gif_ms: int = 150) -> tuple[np.ndarray, str]:
  """A walk's frames as a strip (uint8) and an animated GIF (forth and back) in ``folder``."""
  strip = image_io.make_grid(np.stack(frames), ncol=len(frames))
  path = os.path.join(folder, f"walk_{uuid.uuid4().hex[:12]}.gif")
  image_io.save_animated_gif(path, list(frames) + list(frames[-2:0:-1]), duration_ms=gif_ms)
  return strip, path


def _compile_note(inpainter, num_edits: int | None, searched: bool = False) -> str | None:
  """What the first call of a kind costs: ``num_edits`` SeFa edits, or (None) the labelled
  search (``searched``: it ran before)."""
  if searched if num_edits is None else inpainter.is_compiled(num_edits):
    return None
  if inpainter.platform == "cpu":
    return ("first run: compiling the pipeline, tens of seconds on a CPU (once; later runs "
            "reuse it)")
  return "first run: compiling the pipeline (once)"


def _completions(inpainter, image: np.ndarray, known: np.ndarray, k: int,
                 seed) -> tuple[list[np.ndarray], list[str]]:
  """K completions and their captions (:attr:`Inpainter.last_edits`): SeFa's edits (the seed
  widget: -1 the fixed ones, else drawn), or with ``--edits labelled`` the searched ones, each
  named by what it changed (searched, not drawn: the seed is not shown nor read)."""
  if inpainter.edits == "labelled":
    completions = inpainter.complete(image, known, k)
  else:
    completions = inpainter.complete(image, known, k, None if seed is None or int(seed) < 0
                                     else int(seed))
  return completions, ["0: unperturbed style"] + [
      f"{j + 1}: {what}" for j, what in enumerate(inpainter.last_edits)]


def _handlers(gr, inpainter, workdir: str, walk_steps: int):
  """The Inpaint, Edit and Walk callbacks: each runs the Inpainter, a bad input as gr.Error."""
  def run_guarded(fn):
    try:
      return fn()
    except ValueError as e:       # the user's input: say what is wrong, keep the app running
      raise gr.Error(str(e)) from None

  searched = []                           # the labelled search ran (it compiles once too)

  def progress_start(progress, num_edits: int | None, what: str) -> None:
    note = _compile_note(inpainter, num_edits, bool(searched))
    if note:
      gr.Info(note)
    progress(0.1, desc=note or what)

  def on_complete(editor, k, seed, progress=gr.Progress()):
    def work():
      image, known = editor_inputs(editor)
      notes = input_notes(inpainter, image)            # e.g. a photo that is not square
      for note in notes:                               # a toast now, and below the completions
        gr.Warning(note)
      k_ = int(k)
      labelled = inpainter.edits == "labelled"
      progress_start(progress, None if labelled else k_ - 1, f"inpainting K = {k_}")
      t0 = time.time()
      completions, captions = _completions(inpainter, image, known, k_, seed)
      if labelled:
        searched.append(True)
      progress(1.0, desc=f"done in {time.time() - t0:.1f} s")
      mask_image = np.repeat((known[..., None] * 255).astype(np.uint8), 3, axis=-1)
      return list(zip(completions, captions)), mask_image, notes_markdown(notes)
    return run_guarded(work)

  def on_edit(editor, component, degree, progress=gr.Progress()):
    def work():
      image, known = editor_inputs(editor)
      progress_start(progress, 1, f"direction {int(component)}, degree {float(degree):+.1f}")
      edited = inpainter.edit(image, known, int(component), float(degree))
      progress(1.0)
      return edited
    return run_guarded(work)

  def on_walk(editor, component, max_degree, progress=gr.Progress()):
    def work():
      image, known = editor_inputs(editor)
      progress_start(progress, walk_steps, f"walking direction {int(component)}")
      frames = inpainter.walk(image, known, int(component), float(max_degree), walk_steps)
      progress(0.9, desc="writing the GIF")
      return walk_outputs(frames, workdir)
    return run_guarded(work)
  return on_complete, on_edit, on_walk


def _about(inpainter) -> str:
  about = (f"**{inpainter.checkpoint}**: DiFAI step {inpainter.step}, {inpainter.image_size} px "
           f"model, {inpainter.n_directions} SeFa directions, on {inpainter.platform}. Any image "
           "size: the model sees it at its resolution; known pixels stay exact.")
  if inpainter.edits == "labelled":
    about += (" Inpaint's completions 1..K-1: the least attribute edits a recognizer reads "
              "(--edits labelled, not the paper), each captioned with what it changed; Edit "
              "and Walk follow SeFa's directions.")
  if inpainter.platform == "cpu":
    about += (" The first run compiles the pipeline (tens of seconds on a CPU); later runs "
              "take seconds.")
  return about


def _layout(gr, inpainter, example_paths: list[str], walk_steps: int) -> dict:
  """The widgets, laid out (inside a gr.Blocks context); returned by name for the wiring."""
  gr.Markdown("## DiFAI: diverse facial inpainting\n"
              "Upload a face or pick a toy face below, **brush the hole**, choose K and press "
              "Inpaint.\n\n" + _about(inpainter))
  with gr.Row():
    with gr.Column(scale=1):
      editor = gr.ImageEditor(
          label="face: brush the hole", type="numpy", image_mode="RGBA", format="png",
          sources=("upload", "clipboard"), transforms=(), layers=False,
          brush=gr.Brush(colors=[BRUSH_COLOR], default_size=BRUSH_SIZE, color_mode="fixed"),
          canvas_size=(EXAMPLE_SIZE, EXAMPLE_SIZE), elem_id="face_editor")
      gr.Examples(examples=[[p] for p in example_paths], inputs=[editor],
                  label="toy faces (held-out, never seen in training)",
                  elem_id="toy_examples")
      mask_view = gr.Image(label="mask used (white = known)", format="png", height=200,
                           interactive=False, elem_id="mask_used")
    with gr.Column(scale=1):
      with gr.Row():
        k = gr.Slider(1, min(MAX_K, inpainter.n_directions + 1), value=4, step=1,
                      label="K completions", elem_id="k_slider")
        seed = gr.Number(value=-1, precision=0, elem_id="seed",
                         label="seed (-1: directions 0..K-2 at +-d; else random edits)",
                         visible=inpainter.edits != "labelled")
      run_button = gr.Button("Inpaint", variant="primary", elem_id="run_button")
      gallery = gr.Gallery(label="completions", columns=4, height="auto", format="png",
                           elem_id="completions", object_fit="contain")
      notes = gr.Markdown("", elem_id="input_notes")
  with gr.Row():
    with gr.Column(scale=1):
      component = gr.Slider(0, inpainter.n_directions - 1, value=0, step=1,
                            label="SeFa direction (0 = strongest)", elem_id="sefa_component")
      degree = gr.Slider(-MAX_DEGREE, MAX_DEGREE, value=inpainter.degree, step=0.5,
                         label="degree", elem_id="sefa_degree")
      edit_button = gr.Button("Edit", elem_id="edit_button")
      max_degree = gr.Slider(1.0, MAX_DEGREE, value=10.0, step=0.5,
                             label=f"walk: -max .. +max in {walk_steps} steps",
                             elem_id="walk_max_degree")
      walk_button = gr.Button("Walk", elem_id="walk_button")
    with gr.Column(scale=2):
      edited = gr.Image(label="edited completion", format="png", interactive=False,
                        elem_id="edited")
      strip = gr.Image(label="walk", format="png", interactive=False, elem_id="walk_strip")
      gif = gr.Image(label="walk (GIF)", type="filepath", interactive=False,
                     elem_id="walk_gif")
  return dict(editor=editor, mask_view=mask_view, k=k, seed=seed, run_button=run_button,
              gallery=gallery, notes=notes, component=component, degree=degree,
              edit_button=edit_button, max_degree=max_degree, walk_button=walk_button,
              edited=edited, strip=strip, gif=gif)


def build_demo(inpainter, workdir: str, walk_steps: int = 9):
  """The Blocks app around a loaded :class:`~difai_jax.inference.inpainter.Inpainter`.

  ``workdir``: a folder for the example faces and walk GIFs (served to the browser).
  """
  import gradio as gr  # pylint: disable=import-outside-toplevel
  example_paths = []
  for index, face in zip(EXAMPLE_INDICES, example_faces()):
    path = os.path.join(workdir, f"toy_face_{index}.png")
    image_io.save_png(path, face)
    example_paths.append(path)
  on_complete, on_edit, on_walk = _handlers(gr, inpainter, workdir, walk_steps)
  with gr.Blocks(title="DiFAI: diverse facial inpainting", analytics_enabled=False) as demo:
    w = _layout(gr, inpainter, example_paths, walk_steps)
    w["run_button"].click(on_complete, [w["editor"], w["k"], w["seed"]],
                          [w["gallery"], w["mask_view"], w["notes"]])
    w["edit_button"].click(on_edit, [w["editor"], w["component"], w["degree"]], [w["edited"]])
    w["walk_button"].click(on_walk, [w["editor"], w["component"], w["max_degree"]],
                           [w["strip"], w["gif"]])
  return demo


# ----------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------

def check_port(host: str, port: int) -> None:
  """Refuses a port another program serves on, before the models are loaded."""
  with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as the server will
    try:
      s.bind((host, port))
    except OSError as e:
      raise cli.CliError(f"cannot serve on {host}:{port} ({e.strerror}); pass another --port "
                         "or stop the program using it") from None


def _define_flags():
  from absl import flags  # pylint: disable=import-outside-toplevel
  flags.DEFINE_string("checkpoint", "toy-difai", "trained DiFAI workdir (run or its difai "
                      "stage), or a shipped short name")
  flags.DEFINE_string("host", "127.0.0.1", "address to serve on (0.0.0.0: the whole network)")
  flags.DEFINE_integer("port", 7860, "port to serve on", lower_bound=1, upper_bound=65535)
  flags.DEFINE_boolean("share", False, "also serve through a public gradio.live link")
  flags.DEFINE_float("degree", 5.0, "magnitude of the default SeFa edits (+d, -d, ...)")
  flags.DEFINE_integer("walk_steps", 9, "frames of a walk", lower_bound=2)
  flags.DEFINE_boolean("one_compile", True, "run every call with the same number of SeFa edits "
                       "(extra ones at degree 0, dropped) so that the pipeline compiles once")
  flags.DEFINE_boolean("warmup", False, "compile the pipeline before serving (on a toy face)")
  flags.DEFINE_integer("refine_steps", 0, "not the paper: Adam steps fitting each input's W+ "
                       "codes to its known pixels (as python -m difai_jax.inpaint)", lower_bound=0)
  flags.DEFINE_float("refine_lr", runtime.REFINE_LR, "Adam's learning rate for --refine_steps")
  cli.define_edit_flags("Inpaint's completions 1..K-1")
  cli.define_cache_flag()


def main(argv):
  from absl import app  # pylint: disable=import-outside-toplevel
  from absl import flags  # pylint: disable=import-outside-toplevel
  FLAGS = flags.FLAGS  # pylint: disable=invalid-name
  if len(argv) > 1:
    hint = (" (boolean flags take --share / --noshare or --share=false)"
            if argv[1].lower() in ("true", "false") else "")
    raise app.UsageError(f"unexpected arguments: {argv[1:]}{hint}")
  try:
    import gradio  # pylint: disable=import-outside-toplevel,unused-import
  except ImportError:
    raise cli.CliError("the browser demo needs gradio: pip install -e \".[app]\"") from None
  check_port(FLAGS.host, FLAGS.port)
  problem = runtime.refine_problem(FLAGS.refine_steps, FLAGS.refine_lr)
  if problem:
    raise app.UsageError(problem)
  from difai_jax.inference.inpainter import Inpainter  # pylint: disable=import-outside-toplevel
  print(f"loading {FLAGS.checkpoint} ...", flush=True)
  pad = max(MAX_K - 1, 1, FLAGS.walk_steps) if FLAGS.one_compile else 0
  inpainter = Inpainter(FLAGS.checkpoint, degree=FLAGS.degree, pad_edits=pad,
                        compilation_cache=FLAGS.compilation_cache,
                        refine_steps=FLAGS.refine_steps, refine_lr=FLAGS.refine_lr,
                        edits=FLAGS.edits, edit_recognizer=FLAGS.edit_recognizer)
  print(f"DiFAI step {inpainter.step}, {inpainter.image_size} px, on {inpainter.platform} "
        f"(loaded in {inpainter.load_seconds:.1f} s)", flush=True)
  if FLAGS.warmup:
    t0 = time.time()
    face = example_faces(inpainter.image_size)[0]
    known = np.ones(face.shape[:2], bool)
    known[face.shape[0] // 2:, :] = False
    inpainter.complete(face, known, 2)
    print(f"compiled in {time.time() - t0:.1f} s", flush=True)
  workdir = tempfile.mkdtemp(prefix="difai_app_")
  demo = build_demo(inpainter, workdir, FLAGS.walk_steps)
  print(f"serving on http://{FLAGS.host}:{FLAGS.port} (Ctrl-C stops)", flush=True)
  demo.queue(default_concurrency_limit=1).launch(
      server_name=FLAGS.host, server_port=FLAGS.port, share=FLAGS.share,
      allowed_paths=[workdir], show_error=True, quiet=True)
  return 0


if __name__ == "__main__":
  _define_flags()
  cli.run(main, user_errors=(ValueError, FileNotFoundError))
