"""benchmarks/toy_quality.py's pSp record: the refined-codes ceiling on the shipped toy pSp."""

import numpy as np
import pytest

from benchmarks import toy_quality
from difai_jax import pretrained
from difai_jax.data import image_io
from difai_jax.evaluation.metrics import toy
from difai_jax.training.stages import psp as psp_stage


def test_refined_codes_reconstruct_the_test_faces_better_than_the_encoder(tmp_path):
  module, variables = pretrained.load("toy-psp")
  figure = str(tmp_path / "refined.png")
  record = toy_quality.refined_reconstruction_quality(module, variables, steps=8, num=4,
                                                      figure=figure)
  # The encoder's row is the pSp stage's own measure of the same faces.
  plain = psp_stage.reconstruction_quality(module, variables, num_images=4)
  assert record["psnr_encoder"] == pytest.approx(plain["psnr"], abs=1e-3)
  # Eight Adam steps on W+ already lower the error of the shipped encoder's codes.
  assert record["psnr_refined"] > record["psnr_encoder"] + 0.5, record
  # The figure: one row per face (4 here), face | encoder | refined, 64 px with 2 px borders.
  grid = image_io.load_image_uint8(figure)
  assert grid.shape == (2 + 4 * 66, 2 + 3 * 66, 3)
  faces, _ = toy.toy_test_faces(1)
  np.testing.assert_array_equal(grid[2:66, 2:66], image_io.to_uint8(faces[0]))


def test_stylegan2_record_is_measured_with_the_named_judge():
  # --judge: the same samples and faces in another recognizer's feature space (a cross-check
  # of a toy FID); the default is the shipped judge. 256 > the embedding's 128 dimensions.
  default = toy_quality.stylegan2_quality(256, "toy-stylegan2", attribute_num=256)
  named = toy_quality.stylegan2_quality(256, "toy-stylegan2", judge="toy-judge")
  other = toy_quality.stylegan2_quality(256, "toy-stylegan2", judge="toy-recognizer")
  assert named["toy_fid_samples"] == pytest.approx(default["toy_fid_samples"], rel=1e-6)
  # --attribute_num = --num: the same samples against the same test faces (the floor's second
  # set differs: test faces after them instead of train faces).
  again = default["attribute_gaps_at"]
  assert again["num"] == 256 and again["first_face"] == toy.TEST_START
  assert again["attribute_gap_points"] == default["attribute_gap_points"]
  assert other["toy_fid_samples"] != pytest.approx(default["toy_fid_samples"], rel=1e-3)
  # The narrow toy StyleGAN2 is far from the faces under either judge (floor: real vs real,
  # itself large with 256 faces a side).
  for record in (default, other):
    assert record["toy_fid_samples"] > 3 * record["toy_fid_real_vs_real"]


def test_attribute_gaps_on_more_faces_than_the_test_split_come_from_past_the_splits(
    monkeypatch):
  monkeypatch.setattr(toy, "TEST_SIZE", 200)       # a small "test split" for a cheap run
  record = toy_quality.stylegan2_quality(130, "toy-stylegan2", attribute_num=201)
  more = record["attribute_gaps_at"]
  assert more["num"] == 201 and more["first_face"] == toy_quality.BEYOND_SPLITS
  assert toy_quality.BEYOND_SPLITS >= toy.TEST_START + 2000
  assert set(more["attribute_gap_points"]) == set(record["attribute_gap_points"])
  assert more["attribute_gap_points"] != record["attribute_gap_points"]


def test_class_figure_shows_what_the_judge_reads_as_each_class(tmp_path):
  # Rows: the generator's samples read as each class, then the test faces read as each; the
  # face rows are the first faces the judge labels so, and a class read fewer times than a row
  # holds is padded white.
  figure = str(tmp_path / "classes.png")
  record = toy_quality.class_figure(figure, "hair_style:bald,long", "toy-stylegan2",
                                    num=40, per_row=5)
  faces, _ = toy.toy_test_faces(40)
  rec, rec_vars = toy.load_toy_recognizer(None)
  pred = toy.predict_attributes(rec, rec_vars, faces)
  labels = pred.labels[:, pred.names.index("hair_style")]
  bald, long = (faces[labels == c] for c in (0, 4))
  assert record["counts"]["faces/bald"] == len(bald) and record["counts"]["faces/long"] == len(long)
  assert record["counts"]["samples/bald"] + record["counts"]["samples/long"] <= 40
  grid = image_io.load_image_uint8(figure)
  assert grid.shape == (2 + 4 * 66, 2 + 5 * 66, 3)
  cell = lambda row, col: grid[2 + 66 * row:66 * (row + 1), 2 + 66 * col:66 * (col + 1)]
  np.testing.assert_array_equal(cell(3, 0), image_io.to_uint8(long[0]))
  assert len(bald) < 5              # 40 faces hold one or two bald heads: the rest of row 2 white
  assert (cell(2, 4) == 255).all()
  if len(bald):
    np.testing.assert_array_equal(cell(2, 0), image_io.to_uint8(bald[0]))
  with pytest.raises(ValueError, match="hair_style has no class 'afro'"):
    toy_quality.parse_classes("hair_style:afro")
  with pytest.raises(ValueError, match="ATTRIBUTE:CLASS"):
    toy_quality.parse_classes("haircut:bald")
