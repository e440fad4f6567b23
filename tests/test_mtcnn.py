"""MTCNN (difai_jax/inference/face/mtcnn.py) against facenet-pytorch 2.6.0, from the shipped
weights.

tests/fixtures/mtcnn_io.npz was written by facenet-pytorch 2.6.0 (torch 2.14.1, CPU, its
default MTCNN()) outside this repo: each net's outputs on fixed random inputs, and ``detect``'s
boxes, scores and landmarks on skimage's astronaut and on ``toy_photo`` (toy face 1 of seed 0,
rendered at 96 px, enlarged to 112 px, rotated 15 degrees and pasted off-centre into a 320 x 256
picture; the picture is stored in the file).
"""

import functools
import io
import zipfile

import jax
import numpy as np
import pytest

from difai_jax import pretrained
from difai_jax.inference.face import detect
from difai_jax.inference.face import mtcnn
from tests.conftest import fixture_path
from weights_conversion import mtcnn as convert
from weights_conversion import torch_io

IO = dict(np.load(fixture_path("mtcnn_io.npz")))
NET_OUTPUTS = {"pnet": 2, "rnet": 2, "onet": 3}


@pytest.fixture(scope="module")
def detector():
  return detect.load_detector()


def _net(name):
  """One net, jitted as a whole (one compilation per shape rather than one per op)."""
  return jax.jit(functools.partial(mtcnn.MTCNNNets().apply, method=mtcnn.run(name)))


def _photo(name):
  if name == "astronaut":
    import skimage.data  # pylint: disable=import-outside-toplevel
    return skimage.data.astronaut()
  return IO["toy_photo"]


@pytest.mark.parametrize("net", ["pnet", "rnet", "onet"])
def test_each_net_matches_facenet_pytorch(detector, net):
  outputs = _net(net)(detector.variables, IO[f"{net}_x"])
  assert len(outputs) == NET_OUTPUTS[net]
  for i, out in enumerate(outputs):
    np.testing.assert_allclose(np.asarray(out), IO[f"{net}_y{i}"], atol=1e-5, rtol=0)


def test_pnet_on_padded_levels_equals_each_level_alone(detector):
  """Levels run padded to a few shared shapes (two small ones in one batch, one alone) give
  exactly the cells of each level run at its own size."""
  rng = np.random.default_rng(3)
  levels = [rng.uniform(-1, 1, shape).astype(np.float32)
            for shape in ((13, 17, 3), (41, 30, 3), (150, 139, 3))]
  pnet = _net("pnet")
  for level, padded in zip(levels, detector.run_pnet(levels)):
    alone = pnet(detector.variables, level[None])
    for got, want in zip(padded, alone):
      assert got.shape == want.shape[1:]
      np.testing.assert_allclose(got, np.asarray(want)[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["astronaut", "toy_photo"])
def test_detection_matches_facenet_pytorch(detector, name):
  faces = detector.detect(_photo(name))
  boxes, scores = IO[f"{name}_boxes"], IO[f"{name}_scores"]
  assert len(faces) == len(boxes) == 1
  for face, box, score, landmarks in zip(faces, boxes, scores, IO[f"{name}_landmarks"]):
    np.testing.assert_allclose(face.box, box, atol=1e-3, rtol=0)
    assert face.score == pytest.approx(float(score), abs=1e-5)
    np.testing.assert_allclose(face.landmarks, landmarks, atol=1e-3, rtol=0)
  if name == "toy_photo":   # the face lies where it was pasted, eyes above the mouth
    x0, y0, x1, y1 = faces[0].box
    assert 172 < x0 < x1 < 172 + 140 and 36 < y0 < y1 < 36 + 140
    eyes, mouth = faces[0].landmarks[:2], faces[0].landmarks[3:]
    assert eyes[:, 1].max() < mouth[:, 1].min()


def test_no_face_in_a_plain_picture_and_bad_inputs(detector):
  yy, xx = np.mgrid[0:60, 0:90]
  plain = np.stack([xx * 2, yy * 3, np.full_like(xx, 128)], -1).astype(np.uint8)
  assert not detector.detect(plain)
  with pytest.raises(ValueError, match=r"\(H, W, 3\) RGB image; got shape \(60, 90\)"):
    detector.detect(plain[..., 0])
  with pytest.raises(ValueError, match="three thresholds"):
    mtcnn.Detector(mtcnn.MTCNNNets(), detector.variables, thresholds=(0.5, 0.5))


def test_box_arithmetic():
  boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 4, 4], [20, 20, 30, 30]], np.float32)
  scores = np.array([0.9, 0.95, 0.8, 0.7], np.float32)
  # IoU(0, 1) = 81 / 119 > 0.5; box 2 lies inside box 0 (IoU 0.16, min-overlap 1).
  np.testing.assert_array_equal(mtcnn.nms(boxes, scores, 0.5), [1, 2, 3])
  np.testing.assert_array_equal(mtcnn.nms(boxes, scores, 0.5, overlap="min", plus_one=True),
                                [1, 3])
  np.testing.assert_array_equal(mtcnn.square(np.array([[0, 0, 4, 10]], np.float32)),
                                [[-3, 0, 7, 10]])
  moved = mtcnn.apply_offsets(np.array([[0, 0, 9, 9, 0.5]], np.float32),
                              np.array([[0.1, -0.1, 0.2, 0.0]], np.float32))
  np.testing.assert_allclose(moved, [[1, -1, 11, 9, 0.5]], atol=1e-6)
  # area resize = the mean of whole input blocks when the sizes divide
  image = np.arange(4 * 6 * 1, dtype=np.float32).reshape(4, 6, 1)
  np.testing.assert_allclose(mtcnn.area_resize(image, 2, 3)[..., 0],
                             image[..., 0].reshape(2, 2, 3, 2).mean(axis=(1, 3)))
  assert mtcnn.pyramid_scales(100, 200)[0] == pytest.approx(0.6)
  assert len(mtcnn.pyramid_scales(100, 200)) == 5   # 60, 42.5, 30.2, 21.4, 15.2 px >= 12


def _torch_state_dicts(variables):
  """The shipped Flax variables laid out as facenet-pytorch's three state dicts."""
  import torch  # pylint: disable=import-outside-toplevel
  out = {}
  for net, layers in convert.LAYERS.items():
    params = variables["params"][net]
    sd = {}
    for layer, kind in layers:
      p = {k: np.asarray(v) for k, v in params[layer].items()}
      if kind == "prelu":
        sd[f"{layer}.weight"] = p["alpha"]
        continue
      kernel = p["kernel"].transpose(3, 2, 0, 1) if kind == "conv" else p["kernel"].T
      sd[f"{layer}.weight"], sd[f"{layer}.bias"] = kernel, p["bias"]
    out[net] = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}
  return out


def _wheel(path, state_dicts):
  import torch  # pylint: disable=import-outside-toplevel
  with zipfile.ZipFile(path, "w") as wheel:
    wheel.writestr("facenet_pytorch/__init__.py", "")
    for net, sd in state_dicts.items():
      buffer = io.BytesIO()
      torch.save(sd, buffer)
      wheel.writestr(f"facenet_pytorch/data/{net}.pt", buffer.getvalue())


def test_converter_reads_the_wheel(detector, tmp_path, capsys):
  """A wheel laid out as facenet-pytorch's converts back to the shipped variables exactly;
  a tensor the converter does not know stops it by name."""
  state_dicts = _torch_state_dicts(detector.variables)
  _wheel(tmp_path / "facenet_pytorch-2.6.0-py3-none-any.whl", state_dicts)
  assert convert.main([str(tmp_path / "facenet_pytorch-2.6.0-py3-none-any.whl"),
                       str(tmp_path / "out")]) == 0
  assert "MTCNN (PNet, RNet, ONet), 495850 parameters" in capsys.readouterr().out
  assert pretrained.read_config(tmp_path / "out") == {"kind": "mtcnn"}
  _, variables = pretrained.load(tmp_path / "out")
  flat = jax.tree_util.tree_leaves_with_path(variables)
  shipped = dict(jax.tree_util.tree_leaves_with_path(detector.variables))
  assert len(flat) == len(shipped) == 50
  for path, value in flat:
    np.testing.assert_array_equal(np.asarray(value), np.asarray(shipped[path]))

  import torch  # pylint: disable=import-outside-toplevel
  state_dicts["onet"]["conv5.weight"] = torch.zeros(3)
  _wheel(tmp_path / "bad.whl", state_dicts)
  with pytest.raises(torch_io.ConversionError, match=r"\[onet\].*conv5\.weight \(3,\)"):
    convert.convert(convert.read_state_dicts(str(tmp_path / "bad.whl")))
  (tmp_path / "not_a_wheel.whl").write_text("hello")
  with pytest.raises(torch_io.ConversionError, match="not a wheel"):
    convert.read_state_dicts(str(tmp_path / "not_a_wheel.whl"))
  assert convert.main([str(tmp_path / "bad.whl"), str(tmp_path / "out2")]) == 1
  assert "conv5.weight" in capsys.readouterr().err and not (tmp_path / "out2").exists()
