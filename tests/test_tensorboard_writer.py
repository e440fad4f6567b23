"""The TensorFlow-free TensorBoard writer: its files read back by TensorBoard's own reader.

Everything runs in one subprocess in which ``import tensorflow`` fails (as after
``pip install ".[train]"``): the writer, clu (``periodic_actions`` imports ``metric_writers``,
whose ``__init__`` imports TensorFlow) and TensorBoard's ``event_accumulator``.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_SCRIPT = textwrap.dedent("""
    import glob, io, json, sys
    sys.modules["tensorflow"] = None          # as if TensorFlow were not installed
    import numpy as np
    from PIL import Image
    from difai_jax.training import tensorboard_writer as tbw
    from clu import metric_writers, periodic_actions   # import without TensorFlow

    logdir = sys.argv[1]
    writer = tbw.create_default_writer(logdir, asynchronous=True)
    writer.write_scalars(1, {"loss": 0.5, "lr": np.float32(1e-3)})
    writer.write_scalars(2, {"loss": 0.25})
    batch = np.zeros((2, 8, 6, 3), np.float32)
    batch[0, ..., 0] = 1.0
    grey = (np.arange(48).reshape(8, 6, 1) * 5).astype(np.uint8)
    writer.write_images(2, {"samples": batch, "grey": grey})
    writer.write_texts(3, {"note": "hello **world**"})
    writer.write_histograms(3, {"weights": np.linspace(-1.0, 1.0, 1000)}, {"weights": 10})
    writer.write_summaries(4, {"raw": np.arange(6, dtype=np.float32).reshape(2, 3)})
    writer.close()
    # clu's own create_default_writer now writes through the TensorFlow-free writer too.
    clu_writer = metric_writers.create_default_writer(logdir + "/clu", asynchronous=False)
    periodic_actions.ReportProgress(num_train_steps=2, writer=clu_writer)
    clu_writer.write_scalars(7, {"acc": 0.75})
    clu_writer.close()

    from tensorboard.backend.event_processing import event_accumulator as ea
    def read(folder):
      files = glob.glob(folder + "/events.out.tfevents.*")
      assert len(files) == 1, files
      acc = ea.EventAccumulator(files[0], size_guidance={ea.IMAGES: 0, ea.SCALARS: 0,
                                                         ea.TENSORS: 0, ea.HISTOGRAMS: 0})
      acc.Reload()
      return acc
    acc = read(logdir)
    images = {}
    for tag in acc.Tags()["images"]:
      (event,) = acc.Images(tag)
      pixels = np.asarray(Image.open(io.BytesIO(event.encoded_image_string)))
      images[tag] = [event.step, event.width, event.height, pixels.tolist()]
    (text,) = acc.Tensors("note")
    (histo,) = acc.Histograms("weights")
    from tensorboard.util import tensor_util
    print(json.dumps({
        "tags": {k: sorted(v) for k, v in acc.Tags().items() if isinstance(v, list)},
        "loss": [[e.step, e.value] for e in acc.Scalars("loss")],
        "lr": acc.Scalars("lr")[0].value,
        "images": images,
        "text": [text.step, text.tensor_proto.string_val[0].decode(),
                 acc.SummaryMetadata("note").plugin_data.plugin_name],
        "histo": [histo.step, histo.histogram_value.num, histo.histogram_value.min,
                  histo.histogram_value.max, list(histo.histogram_value.bucket)],
        "raw": tensor_util.make_ndarray(acc.Tensors("raw")[0].tensor_proto).tolist(),
        "clu": [[e.step, e.value] for e in read(logdir + "/clu").Scalars("acc")],
        "tensorflow_imported": sys.modules["tensorflow"] is not None,
        "framing": [tbw.crc32c(b"123456789"), tbw.crc32c(b""), tbw.tfrecord(b"abc").hex(),
                    tbw._varint(300).hex(), tbw._varint(-1).hex()],
    }))
    """)


@pytest.fixture(scope="module")
def read_back(tmp_path_factory):
  logdir = tmp_path_factory.mktemp("tb")
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", _SCRIPT, str(logdir)], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


def test_scalars_texts_histograms_and_tensors_read_back(read_back):
  assert not read_back["tensorflow_imported"]
  assert read_back["loss"] == [[1, 0.5], [2, 0.25]]
  assert read_back["lr"] == pytest.approx(1e-3)
  assert read_back["tags"]["scalars"] == ["loss", "lr"]
  assert read_back["text"] == [3, "hello **world**", "text"]
  step, num, lo, hi, buckets = read_back["histo"]
  assert (step, num, lo, hi) == (3, 1000, -1.0, 1.0)
  assert len(buckets) == 10 and sum(buckets) == 1000
  assert read_back["raw"] == [[0, 1, 2], [3, 4, 5]]


def test_images_are_pngs_with_their_pixels(read_back):
  images = read_back["images"]
  assert sorted(images) == ["grey", "samples/0", "samples/1"]
  step, width, height, pixels = images["samples/0"]
  assert (step, width, height) == (2, 6, 8)
  assert pixels[0][0] == [255, 0, 0] and pixels[7][5] == [255, 0, 0]
  assert images["samples/1"][3][4][2] == [0, 0, 0]
  grey = images["grey"][3]
  assert grey[0][:3] == [0, 5, 10] and grey[7][5] == 235


def test_clu_imports_and_writes_without_tensorflow(read_back):
  assert read_back["clu"] == [[7, 0.75]]


def test_record_framing(read_back):
  crc, crc_empty, record, varint_300, varint_minus_1 = read_back["framing"]
  assert crc == 0xE3069283 and crc_empty == 0              # the CRC-32C check values
  record = bytes.fromhex(record)
  assert record[:8] == (3).to_bytes(8, "little") and record[12:15] == b"abc"
  assert len(record) == 8 + 4 + 3 + 4
  assert varint_300 == "ac02"                                # the protobuf docs' example
  assert varint_minus_1 == "ff" * 9 + "01"                   # int64 -1: ten bytes


def test_training_never_imports_tensorflow_even_when_installed():
  # TensorFlow is installed in the test environment (the test extra), and clu's metric writers
  # would import it: the training loop must not pay for it.
  script = textwrap.dedent("""
      import importlib.util, json, sys
      import difai_jax.training.loop
      from clu import metric_writers
      print(json.dumps({"installed": importlib.util.find_spec("tensorflow") is not None,
                        "imported": "tensorflow" in sys.modules,
                        "writer": metric_writers.SummaryWriter.__module__}))
      """)
  proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                        text=True, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  seen = json.loads(proc.stdout.strip().splitlines()[-1])
  assert seen == {"installed": True, "imported": False,
                  "writer": "difai_jax.training.tensorboard_writer"}, seen
