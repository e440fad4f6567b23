"""difai_jax.inference.inpainter (the browser demo's model class) on the shipped toy DiFAI, 64 px.

One compilation serves the module: ``pad_edits=2`` runs K = 3, an edit and a 2-step walk as the
same program (2 SeFa edits). Also the editor value -> (image, mask) conversion of the app.
"""

import shutil

import numpy as np
import pytest

from difai_jax import app
from difai_jax import labelled_edits
from difai_jax import pretrained
from difai_jax.data import image_io
from difai_jax.data import toy_faces
from difai_jax.evaluation.metrics import toy
from difai_jax.inference.inpainter import Inpainter

K = 3


@pytest.fixture(scope="module")
def inpainter():
  return Inpainter("toy-difai", degree=5.0, pad_edits=K - 1)


@pytest.fixture(scope="module")
def face_and_known():
  face = toy_faces.render_face(0, 28000, 64)
  known = np.ones((64, 64), bool)
  known[30:50, 16:48] = False           # mouth and chin
  known[8:12, 50:56] = False            # a second, small hole
  return face, known


@pytest.fixture(scope="module")
def completions(inpainter, face_and_known):
  face, known = face_and_known
  return inpainter.complete(face, known, K)


def test_completions_keep_known_pixels_and_differ_in_the_hole(completions, face_and_known):
  face, known = face_and_known
  assert len(completions) == K
  for completion in completions:
    assert completion.shape == face.shape and completion.dtype == np.uint8
    np.testing.assert_array_equal(completion[known], face[known])
  hole = ~known
  for a in range(K):
    for b in range(a + 1, K):
      diff = np.abs(completions[a][hole].astype(np.int16) - completions[b][hole]).mean()
      assert diff > 5.0, (a, b, diff)
  # The hole is filled, not left as the input's pixels.
  assert np.abs(completions[0][hole].astype(np.int16) - face[hole]).mean() > 5.0


def test_edit_and_walk_match_the_completions(inpainter, completions, face_and_known):
  face, known = face_and_known
  # Default edits: completion 1 = direction 0 at +5, completion 2 = direction 1 at -5.
  assert inpainter.default_edits(K) == ([0, 1], [5.0, -5.0])
  edited = inpainter.edit(face, known, component=0, degree=5.0)
  assert np.abs(edited.astype(np.int16) - completions[1]).max() <= 1
  frames = inpainter.walk(face, known, component=1, max_degree=5.0, steps=2)   # -5, +5
  assert len(frames) == 2
  assert np.abs(frames[0].astype(np.int16) - completions[2]).max() <= 1
  np.testing.assert_array_equal(frames[1][known], face[known])
  assert inpainter.is_compiled(1) and inpainter.is_compiled(K - 1)
  # The browser demo's Inpaint: these completions, captioned with their SeFa edits.
  shown, captions = app._completions(inpainter, face, known, K, seed=-1)
  assert captions == ["0: unperturbed style", "1: direction 0, +5.0", "2: direction 1, -5.0"]
  for a, b in zip(shown, completions, strict=True):
    np.testing.assert_array_equal(a, b)


def test_seeded_edits_are_drawn_and_reproducible(inpainter, completions, face_and_known):
  face, known = face_and_known
  components, degrees = inpainter.default_edits(K, seed=7)
  assert components == inpainter.default_edits(K, seed=7)[0] and len(set(components)) == K - 1
  top_k, low, high = inpainter.sampling
  assert all(0 <= c < top_k for c in components)
  assert all(low <= abs(d) <= high for d in degrees)
  seeded = inpainter.complete(face, known, K, seed=7)
  again = inpainter.complete(face, known, K, seed=7)
  for a, b in zip(seeded, again):
    np.testing.assert_array_equal(a, b)
  # Completion 0 is the unperturbed style image's, whatever the edits.
  assert np.abs(seeded[0].astype(np.int16) - completions[0]).max() <= 1


@pytest.mark.parametrize("image_shape, known_shape, known_value, k, match", [
    ((64, 64, 3), (32, 32), None, K, r"mask has shape \(32, 32\) but the image is 64x64"),
    ((64, 64, 3), (64, 64, 2), None, K, r"mask has shape \(64, 64, 2\)"),
    ((64, 64), (64, 64), None, K, r"image must be \(H, W, 3\) uint8 RGB; got shape \(64, 64\)"),
    ((64, 64, 3), (64, 64), 1.0, K, "mask has no hole"),
    ((64, 64, 3), (64, 64), 0.0, K, "mask is all hole"),
    ((64, 64, 3), (64, 64), 0.5, K, "mask has values other than 0 and 1"),
    ((64, 64, 3), (64, 64), None, 0, "K must be at least 1"),
    ((64, 64, 3), (64, 64), None, 130, "K = 130 asks for 129 SeFa edits"),
])
def test_bad_inputs_raise_clear_errors(inpainter, image_shape, known_shape, known_value, k,
                                       match):
  image = np.zeros(image_shape, np.uint8)
  if known_value is None:
    known = np.ones(known_shape, bool)
    known[..., 10:20, 10:20] = False
  else:
    known = np.full(known_shape, known_value, np.float32)
  with pytest.raises(ValueError, match=match):
    inpainter.complete(image, known, k)


def test_edit_direction_out_of_range(inpainter, face_and_known):
  with pytest.raises(ValueError, match=r"SeFa direction 128 out of range.*\(0\.\.127\)"):
    inpainter.edit(*face_and_known, component=128, degree=1.0)


def test_editor_value_to_image_and_mask():
  background = np.zeros((6, 8, 4), np.uint8)
  background[..., :3] = 100
  background[..., 3] = 255
  background[0, 0, 3] = 0                           # transparent: composited on white
  layer = np.zeros((6, 8, 4), np.uint8)
  layer[2:4, 3:6] = (255, 0, 255, 255)
  layer[5, 7, 3] = 40                               # a soft brush edge counts as hole
  image, known = app.editor_inputs({"background": background, "layers": [layer],
                                    "composite": None})
  assert image.shape == (6, 8, 3) and image.dtype == np.uint8
  assert tuple(image[0, 0]) == (255, 255, 255) and tuple(image[1, 1]) == (100, 100, 100)
  expected = np.ones((6, 8), bool)
  expected[2:4, 3:6] = False
  expected[5, 7] = False
  np.testing.assert_array_equal(known, expected)
  with pytest.raises(ValueError, match="brush the hole first"):
    app.editor_inputs({"background": background, "layers": [], "composite": None})
  with pytest.raises(ValueError, match="upload a face or pick a toy face first"):
    app.editor_inputs(None)


def test_app_notes_a_face_the_model_sees_distorted(inpainter):
  size = inpainter.image_size
  assert app.input_notes(inpainter, np.zeros((size, size, 3), np.uint8)) == []
  notes = app.input_notes(inpainter, np.zeros((1000, 1600, 3), np.uint8))
  assert notes == [f"the face is 1600x1000, not square: the model sees it stretched to "
                   f"{size}x{size} (the outputs keep 1600x1000); crop it to the face for best "
                   "results"], notes
  # the same note stays on the page under the completions (the toast fades)
  assert app.notes_markdown(notes) == f"**Note:** {notes[0]}"
  assert app.notes_markdown([]) == ""
  (small,) = app.input_notes(inpainter, np.zeros((8, 8, 3), np.uint8))
  assert small.startswith(f"the face is 8x8, far smaller than the model's {size} px"), small



def test_refusals_of_the_fitting_settings_come_before_loading():
  for steps, lr in ((-1, 0.03), (5, 0.0)):
    with pytest.raises(ValueError, match="refine_steps must be >= 0 and refine_lr > 0"):
      Inpainter("no such run", refine_steps=steps, refine_lr=lr)


def test_the_app_refuses_a_fitting_rate_before_loading():
  from tests.test_cli import run_cli  # pylint: disable=import-outside-toplevel
  proc = run_cli("difai_jax.app", "--refine_lr", "0", "--port", "7999")
  assert proc.returncode == 1, proc.stderr[-2000:]
  assert "--refine_steps must be >= 0 and --refine_lr > 0; got 0 and 0.0" in proc.stderr
  assert proc.jax_imported is False and "loading" not in proc.stdout


def test_labelled_edits_are_the_least_the_training_recognizer_reads(inpainter, face_and_known):
  """edits='labelled' (not the paper) on the shipped toy-difai and its labelled_edits.npz: the
  hole (mouth and chin) gets three edits, each named, each read by the training recognizer as
  the change it names; known pixels stay exact; SeFa's edit / walk and their checks are as
  before."""
  face, known = face_and_known
  labelled = Inpainter("toy-difai", edits="labelled")
  outs = labelled.complete(face, known)
  assert len(outs) == 4 and len(labelled.last_edits) == 3
  for out in outs:
    np.testing.assert_array_equal(out[known], face[known])
  # measured: lipstick -> yes (strength 3), glasses -> none (5), moustache -> yes (2), local
  assert all(what.endswith(", local)") for what in labelled.last_edits), labelled.last_edits
  pred = toy.predict_attributes(*toy.load_toy_recognizer("toy-recognizer"),
                                image_io.uint8_to_float(np.stack(outs)))
  attributes = set()
  for j, what in enumerate(labelled.last_edits, 1):
    attribute, target = what.split(" (")[0].split(" -> ")
    column = pred.names.index(attribute)
    assert pred.labels[j, column] != pred.labels[0, column], what
    assert toy_faces.ATTRIBUTES[attribute][pred.labels[j, column]] == target, what
    attributes.add(attribute)
  assert attributes & {"lipstick", "moustache", "beard"}     # the hole is the mouth and chin
  # completion 0 is the plain one's (also when it is all that is asked); a seed is refused
  assert np.abs(outs[0].astype(np.int16) - inpainter.complete(face, known, K)[0]).max() <= 1
  alone = labelled.complete(face, known, 1)
  assert len(alone) == 1 and labelled.last_edits == []
  np.testing.assert_array_equal(alone[0], outs[0])
  with pytest.raises(ValueError, match="labelled edits are searched, not drawn"):
    labelled.complete(face, known, seed=1)
  with pytest.raises(ValueError, match="needs an Inpainter made with edits='labelled'"):
    inpainter.labelled_outputs(None, None, None, 3)
  # The browser demo's Inpaint (app --edits labelled): the same completions, each captioned
  # with what it changed (the seed widget, hidden there, is not read).
  shown, captions = app._completions(labelled, face, known, 4, seed=5)
  assert captions == ["0: unperturbed style"] + [f"{j}: {what}" for j, what
                                                 in enumerate(labelled.last_edits, 1)]
  for a, b in zip(shown, outs, strict=True):
    np.testing.assert_array_equal(a, b)
  assert "--edits labelled" in app._about(labelled) and "labelled" not in app._about(inpainter)


def test_labelled_edits_need_their_file_and_refuse_the_judge(tmp_path):
  with pytest.raises(ValueError, match="edits must be 'sefa' \\(the paper\\) or 'labelled'"):
    Inpainter("toy-difai", edits="random")
  with pytest.raises(ValueError, match="search margin is a probability below 1"):
    Inpainter("toy-difai", edits="labelled", edit_search=labelled_edits.Search(margin=1.5))
  run = tmp_path / "run"
  shutil.copytree(pretrained.resolve("toy-difai"), run,
                  ignore=shutil.ignore_patterns(labelled_edits.FILE_NAME))
  with pytest.raises(FileNotFoundError, match="has no labelled_edits.npz"):
    Inpainter(str(run), edits="labelled")
  with pytest.raises(ValueError, match="is the toy judge"):
    Inpainter("toy-difai", edits="labelled", edit_recognizer="toy-judge")
