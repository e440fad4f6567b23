"""Other methods beside DiFAI: mask files out and in, completions folders scored with DiFAI's
protocol, and the readings best / mean of Table 1.

The folder test runs a real evaluation of the tiny trained run (``tests/test_evaluate.py``'s,
trained once per test session and shared) with ``write_completions``: its completions, written
as 8-bit PNGs, scored as another method's folder, give the numbers the evaluation gave.
"""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image
import pytest

from difai_jax.evaluation import comparison
from difai_jax import pretrained
from difai_jax.data import image_io
from difai_jax.data import loader as data_loader
from difai_jax.evaluation import completions_folder
from difai_jax.evaluation import loop as eval_loop
from difai_jax.evaluation import mask_exchange
from difai_jax.evaluation import score_folder
from difai_jax.evaluation import scoring as eval_metrics
from difai_jax.evaluation.metrics import lpips as lpips_lib
from tests import test_evaluate
from tests import tiny_config

SIZE, N_IMAGES = 32, 8
BUCKETS = ("20-30", "40-50")


def tiny_data(masks_per_bucket: int = 4) -> ml_collections.ConfigDict:
  data = tiny_config.get_config().data
  data.masks_per_bucket = masks_per_bucket
  return data


# ---- masks out, masks in ----

@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  """Masks of two buckets for 5 test images, exported white = hole (LaMa's convention)."""
  out = tmp_path_factory.mktemp("exported")
  data = mask_exchange.placed_data(tiny_data(), str(out / "work"))
  manifest = mask_exchange.export_masks(data, SIZE, list(BUCKETS), 5, str(out / "masks"),
                                        "hole1", verbose=False)
  return data, str(out / "masks"), manifest


def _evaluated_masks(data, bucket, n, bucket_masks=None):
  ds = data_loader.make_eval_dataset(data, bucket=bucket, image_size=SIZE, batch_size=1,
                                     process_index=0, process_count=1, num_images=n,
                                     verbose=False, bucket_masks=bucket_masks)
  return np.stack([ds[i]["mask"][0] for i in range(len(ds))])


def test_exported_masks_read_back_as_identical_buckets(exported):
  data, folder, manifest = exported
  assert manifest["convention"] == "hole1" and set(manifest["buckets"]) == set(BUCKETS)
  # White = hole on disk: the file is the inverse of our mask.
  first = manifest["buckets"]["20-30"][0]
  on_disk = np.asarray(Image.open(os.path.join(folder, first["mask"]))) / 255.0
  evaluated = _evaluated_masks(data, "20-30", 5)
  np.testing.assert_array_equal(on_disk, 1.0 - evaluated[0, ..., 0])
  assert first["hole_ratio"] == pytest.approx(1.0 - evaluated[0].mean())
  assert os.path.isfile(os.path.join(folder, "images", "00004.png"))
  assert open(os.path.join(folder, "manifest.csv"), encoding="utf-8").readline().strip() == \
      "bucket,image_id,mask,image,hole_ratio"
  buckets, info = mask_exchange.read_mask_folder(folder, "hole1", SIZE)
  assert sorted(buckets) == sorted(BUCKETS) and info["left_out"] == 0
  for bucket in BUCKETS:
    read_back = _evaluated_masks(data, bucket, 5, buckets[bucket])
    np.testing.assert_array_equal(read_back, _evaluated_masks(data, bucket, 5))
  with pytest.raises(ValueError, match="exported with --mask_convention hole1"):
    mask_exchange.read_mask_folder(folder, "known1", SIZE)


def test_a_published_flat_folder_is_bucketed_by_hole_ratio(exported, tmp_path):
  _, folder, _ = exported
  for bucket in BUCKETS:                               # flattened, names of their own
    for name in sorted(os.listdir(os.path.join(folder, bucket))):
      shutil.copy(os.path.join(folder, bucket, name), tmp_path / f"{bucket}_{name}")
  Image.fromarray(np.zeros((SIZE, SIZE), np.uint8)).save(tmp_path / "no_hole.png")
  buckets, info = mask_exchange.read_mask_folder(str(tmp_path), "hole1", SIZE)
  assert sorted(buckets) == sorted(BUCKETS) and info == {"left_out": 1, "files": 11}
  for bucket in BUCKETS:
    assert len(buckets[bucket]) == 5
    expected = [image_io.load_mask(os.path.join(folder, bucket, f"0000{i}.png"),
                                   convention="hole_is_white") for i in range(5)]
    np.testing.assert_array_equal(np.stack([buckets[bucket][i] for i in range(5)]),
                                  np.stack(expected))
  with pytest.raises(ValueError, match=r"no masks for bucket\(s\) \['quickdraw'\]"):
    mask_exchange.bucket_masks_from(str(tmp_path), "hole1", ("quickdraw", "20-30"), SIZE)


def test_export_masks_cli(tmp_path):
  proc = test_evaluate.run_module(
      "difai_jax.evaluate", "--export_masks", str(tmp_path / "masks"), "--config",
      "tests/tiny_config.py", "--config.data.masks_per_bucket=4", "--buckets", "10-20",
      "--max_images", "3", "--mask_convention", "hole1")
  assert proc.returncode == 0, proc.stderr[-2000:]
  with open(tmp_path / "masks" / "manifest.json", encoding="utf-8") as f:
    manifest = json.load(f)
  assert [e["image_id"] for e in manifest["buckets"]["10-20"]] == ["00000", "00001", "00002"]
  assert all(0.10 <= e["hole_ratio"] < 0.20 for e in manifest["buckets"]["10-20"])
  assert manifest["white"] == "hole"


# ---- Table 1's readings ----

def test_table1_best_and_mean_readings():
  rng = np.random.default_rng(0)
  image = rng.uniform(-1, 1, (4, SIZE, SIZE, 3)).astype(np.float32)
  noise = np.array([0.05, 0.3, 0.6])[:, None, None, None, None]
  completions = np.clip(image + rng.normal(0, 1, (3,) + image.shape) * noise, -1, 1)
  completions = completions.astype(np.float32)
  index = np.arange(4, dtype=np.int32)
  probes = tuple(p for p, _ in test_evaluate.toy_probes(SIZE))[:1]
  variables = {"lpips": None, "probes": {p.name: v for p, v in test_evaluate.toy_probes(SIZE)}}
  rows = {}
  for reading in ("first", "all", "best", "mean"):
    scorer = eval_metrics.Scorer(table1=reading, lpips=test_evaluate.MeanAbs(), probes=probes)
    out = jax.device_get(eval_metrics.score_completions(completions, image, index, variables,
                                                        scorer))
    scores = eval_metrics.BucketScores(scorer, ["toy_fid"])
    scores.add(out, np.ones(4, bool), index, np.full(4, 0.3))
    rows[reading] = scores.row(scores.real_statistics())
  per = np.abs(completions - image).mean(axis=(2, 3, 4))                # (K, N) MeanAbs
  assert rows["first"]["lpips"] == pytest.approx(per[0].mean(), rel=1e-5)
  assert rows["all"]["lpips"] == pytest.approx(per.mean(), rel=1e-5)
  assert rows["best"]["lpips"] == pytest.approx(per.min(axis=0).mean(), rel=1e-5)
  assert rows["mean"]["lpips"] == pytest.approx(per.mean(), rel=1e-5)
  assert rows["all"]["toy_fid_samples"] == 12 and rows["mean"]["toy_fid_samples"] == 12
  assert rows["mean"]["toy_fid"] != pytest.approx(rows["all"]["toy_fid"], rel=1e-3)
  assert rows["best"]["ssim"] >= rows["all"]["ssim"]


# ---- completions folders ----

def random_lpips_dir(tmp) -> str:
  """Random LPIPS (AlexNet) weights saved in converted form under ``tmp``."""
  lpips_dir = str(tmp / "lpips_alex")
  x = jax.ShapeDtypeStruct((1, SIZE, SIZE, 3), jnp.float32)
  pretrained.save(lpips_dir, "lpips", {"net": "alex"}, eval_metrics.random_variables(
      lpips_lib.LPIPS(net="alex"), x, x, seed=0))
  return lpips_dir


@pytest.fixture(scope="module")
def difai_written(tmp_path_factory):
  """A DiFAI evaluation of the tiny run (K = 3, 8 images, 2 buckets, every extra metric) that
  wrote its completions as 8-bit PNGs; (report, completions folder, options)."""
  run = test_evaluate.trained_tiny_run(tmp_path_factory)
  tmp = tmp_path_factory.mktemp("difai_written")
  lpips_dir = random_lpips_dir(tmp)
  options = dict(buckets=BUCKETS, max_images=N_IMAGES, batch_size=4, num_completions=3,
                 lpips_dir=lpips_dir, extra_metrics=("psnr", "lpips_hole", "ids", "prdc"))
  written = str(tmp / "completions")
  report = eval_loop.evaluate(run, data_config=tiny_data(), eval_dir=str(tmp / "eval"),
                              probes=test_evaluate.toy_probes(SIZE), verbose=False,
                              write_completions=written, **options)
  return report, written, options


def _score(folder, out, options, **kw):
  return score_folder.score_folder(folder, data_config=tiny_data(), image_size=SIZE,
                                   eval_dir=str(out), probes=test_evaluate.toy_probes(SIZE),
                                   ms_ssim_config=(0.1356, 0.8644), verbose=False,
                                   **options, **kw)


def _assert_rows_equal(got, expected):
  for bucket, row in expected.items():
    for metric, value in row.items():
      assert got[bucket][metric] == pytest.approx(value, rel=1e-5, abs=1e-6), (bucket, metric)


def test_a_folder_of_difai_outputs_scores_what_evaluate_gave(difai_written, tmp_path):
  expected, written, options = difai_written
  assert sorted(os.listdir(os.path.join(written, "40-50")))[:4] == [
      "00000_0.png", "00000_1.png", "00000_2.png", "00001_0.png"]
  assert "quantised to 8 bits" in expected["scored"]
  for metric in ("psnr", "lpips_hole", "toy_p_ids", "toy_u_ids", "toy_precision",
                 "toy_coverage", "diversity", "toy_fid"):
    assert metric in expected["metrics"] and expected["results"]["20-30"][metric] is not None
  report = _score(written, tmp_path / "eval", options, method="DiFAI-as-files")
  assert report["num_completions"] == 3 and report["results_raw"] is None
  assert report["known_pixels"]["altered_files"] == []
  assert report["metrics"] == expected["metrics"]
  _assert_rows_equal(report["results"], expected["results"])
  # Image by image too: the two folders can be compared pairwise.
  run_eval = os.path.join(os.path.dirname(written), "eval")
  for bucket in BUCKETS:
    ours = np.load(os.path.join(run_eval, f"per_image_{bucket}.npz"))
    theirs = np.load(tmp_path / "eval" / f"per_image_{bucket}.npz")
    assert ours["index"].tolist() == theirs["index"].tolist() and len(ours["index"]) == N_IMAGES
    for name in ("ssim", "lpips", "psnr"):
      np.testing.assert_allclose(theirs[name], ours[name], rtol=1e-5, atol=1e-6)
  # Beside the DiFAI run in compare, under the method's name, with DiFAI's paper column.
  table = comparison.run([os.path.dirname(written) + "/eval", str(tmp_path / "eval")])
  assert table["names"] == ["sparn", "DiFAI-as-files"]
  row = [r for r in table["rows"] if r["bucket"] == "20-30" and r["metric"] == "lpips"][0]
  assert row["sparn (paper)"] == 0.084 and row["DiFAI-as-files (paper)"] is None


def test_altered_known_pixels_are_named_and_scored_both_ways(difai_written, tmp_path):
  expected, written, options = difai_written
  folder = tmp_path / "altered"
  shutil.copytree(written, folder)
  target = folder / "20-30" / "00001_0.png"
  pixels = np.asarray(Image.open(target)).copy()
  data = mask_exchange.placed_data(tiny_data(), str(tmp_path / "work"))
  known = _evaluated_masks(data, "20-30", N_IMAGES)[1, ..., 0] > 0
  pixels[known] = 255 - pixels[known]                   # the hole is left as it was
  Image.fromarray(pixels).save(target)
  report = _score(str(folder), tmp_path / "eval", options)
  assert report["known_pixels"]["altered_files"] == [str(target)]
  assert any(str(target) in note and "composited" in note for note in report["notes"])
  _assert_rows_equal(report["results"], {"20-30": {
      m: v for m, v in expected["results"]["20-30"].items() if m not in ("diversity",)}})
  assert report["results_raw"]["20-30"]["ssim"] < report["results"]["20-30"]["ssim"]
  md = (tmp_path / "eval" / "results.md").read_text(encoding="utf-8")
  assert "The files as they are" in md


def test_a_single_completion_method_reports_diversity_as_na(difai_written, tmp_path):
  _, written, options = difai_written
  for bucket in BUCKETS:
    os.makedirs(tmp_path / "k1" / bucket)
    for i in range(N_IMAGES):
      shutil.copy(os.path.join(written, bucket, f"{i:05d}_0.png"),
                  tmp_path / "k1" / bucket / f"{i:05d}.png")
  report = _score(str(tmp_path / "k1"), tmp_path / "eval", options)
  assert report["num_completions"] == 1 and "diversity" in report["metrics"]
  assert report["results"]["20-30"]["diversity"] is None
  md = (tmp_path / "eval" / "results.md").read_text(encoding="utf-8")
  assert "diversity = n/a (K = 1" in md


def _make_folder(root, k=2, n=3, size=SIZE):
  for bucket in BUCKETS:
    for i in range(n):
      for j in range(k):
        image_io.save_png(root / bucket / f"{i:05d}_{j}.png", np.zeros((size, size, 3)))


def test_bad_folders_name_the_file(tmp_path):
  _make_folder(tmp_path / "ok")
  folder = completions_folder.CompletionsFolder(str(tmp_path / "ok"), BUCKETS, 3, SIZE)
  assert folder.num_completions == 2 and folder.load("40-50", 2).shape == (2, SIZE, SIZE, 3)
  missing = tmp_path / "ok" / "40-50" / "00001_1.png"
  os.remove(missing)
  with pytest.raises(ValueError, match=f"missing completion {missing}"):
    completions_folder.CompletionsFolder(str(tmp_path / "ok"), BUCKETS, 3, SIZE)
  _make_folder(tmp_path / "size")
  wrong = tmp_path / "size" / "20-30" / "00002_0.png"
  image_io.save_png(wrong, np.zeros((SIZE, SIZE + 8, 3)))
  with pytest.raises(ValueError, match=f"completion {wrong} is 40 x 32 px; the test images "
                                       "are 32 x 32"):
    completions_folder.CompletionsFolder(str(tmp_path / "size"), BUCKETS, 3, SIZE)
  _make_folder(tmp_path / "broken")
  broken = tmp_path / "broken" / "40-50" / "00000_1.png"
  broken.write_bytes(b"not a png")
  with pytest.raises(ValueError, match=f"cannot read completion {broken}"):
    completions_folder.CompletionsFolder(str(tmp_path / "broken"), BUCKETS, 3, SIZE)
  with pytest.raises(ValueError, match="completions folder .*10-20 not found"):
    completions_folder.CompletionsFolder(str(tmp_path / "broken"), ("10-20",), 3, SIZE)
  mean, peak = completions_folder.known_pixel_change(
      np.full((2, 4, 4, 3), 10, np.uint8), np.full((4, 4, 3), 12, np.uint8),
      np.ones((4, 4, 1)))
  assert mean.tolist() == [2.0, 2.0] and peak.tolist() == [2, 2]


def test_cli_names_a_missing_completion_in_one_line(tmp_path):
  _make_folder(tmp_path / "method", n=2)
  proc = test_evaluate.run_module(
      "difai_jax.evaluate", "--completions_dir", str(tmp_path / "method"), "--config",
      "tests/tiny_config.py", "--config.data.masks_per_bucket=4", "--buckets", "20-30",
      "--max_images", "3", "--eval_dir", str(tmp_path / "eval"))
  assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
  assert proc.stderr.startswith(f"error: missing completion {tmp_path}/method/20-30/00002_0.png")
  assert proc.stderr.strip().count("\n") == 0
