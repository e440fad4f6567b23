"""benchmarks/tpu_compile.py without a TPU compile: the batch search, the parsing of XLA:TPU's
out-of-memory report and of --variant, and its errors.

Compiling the DiFAI step for a TPU needs libtpu (a 213 MB wheel) and minutes of CPU even for
the tiny config (the smallest full compile, v5e:2x2, took 160 CPU s here), so the compiles
themselves are not part of the suite; benchmarks/RESULTS.md records what they measured.
"""

import pytest

from benchmarks import difai_setup
from benchmarks import tpu_compile


def _memory(fixed, per_sample, calls):
  def try_batch(b):
    calls.append(b)
    return fixed + per_sample * b
  return try_batch


def test_search_finds_the_largest_fitting_batch_in_few_compiles():
  calls = []
  # 1.65 + 4.6 b GiB (the celebahq step's scale) in 16 GiB: b = 3.
  assert tpu_compile.find_max_batch(_memory(1.65, 4.6, calls), 16.0, start=2) == 3
  assert calls == [2, 4, 3]
  for fixed, per_sample, capacity in ((1.0, 0.5, 16.0), (10.0, 0.1, 95.0), (0.3, 2.7, 32.0)):
    calls = []
    best = tpu_compile.find_max_batch(_memory(fixed, per_sample, calls), capacity, start=4)
    assert best == max(b for b in range(1, 1025) if fixed + per_sample * b <= capacity)
    assert len(calls) <= 5, calls


def test_search_confirms_a_known_answer_in_two_compiles_and_handles_the_edges():
  calls = []
  assert tpu_compile.find_max_batch(_memory(1.0, 0.5, calls), 16.0, start=30, step=1) == 30
  assert calls == [30, 31]
  # None fits (a compile that fails returns None), or everything up to the limit does.
  assert tpu_compile.find_max_batch(lambda b: None, 16.0, start=4) == 0
  assert tpu_compile.find_max_batch(lambda b: 1.0, 16.0, start=4, limit=64) == 64
  # Not linear: still the largest fitting batch.
  memory = lambda b: 1.0 + 0.9 * b + 0.02 * b * b
  best = tpu_compile.find_max_batch(memory, 16.0, start=2)
  assert best == max(b for b in range(1, 100) if memory(b) <= 16.0)


def test_temporaries_from_the_out_of_memory_report():
  text = ("RESOURCE_EXHAUSTED: Ran out of memory on HBM, the total memory required for HLO "
          "temporaries (43.30M) exceeds available HBM (1.00M).")
  assert tpu_compile.temporaries_from_error(text) == pytest.approx(43.30 * 2 ** 20)
  assert tpu_compile.temporaries_from_error("... HLO temporaries (11.43G) ...") == pytest.approx(
      11.43 * 2 ** 30)
  assert tpu_compile.temporaries_from_error("INTERNAL: something else") is None


def test_variants_override_the_config_and_name_unknown_keys():
  overrides = tpu_compile.parse_variant(
      "pretrained.psp_decode_size=256,pretrained.dtype.psp=bfloat16")
  assert overrides == [("pretrained.psp_decode_size", 256), ("pretrained.dtype.psp", "bfloat16")]
  assert tpu_compile.parse_variant("base") == []
  base = difai_setup.load_config("celebahq")
  config = tpu_compile.apply_overrides(base, overrides)
  assert config.pretrained.psp_decode_size == 256 and config.pretrained.dtype.psp == "bfloat16"
  assert base.pretrained.psp_decode_size == 0          # the base config is left as it was
  with pytest.raises(ValueError, match="no 'pretrained.nope'"):
    tpu_compile.apply_overrides(base, [("pretrained.nope", 1)])
  with pytest.raises(ValueError, match="KEY=VALUE"):
    tpu_compile.parse_variant("psp_decode_size")


def test_bad_topologies_are_named():
  with pytest.raises(ValueError, match="v9:2x2.*one of v4, v5e, v5p, v6e"):
    tpu_compile.topology_devices("v9:2x2")
  with pytest.raises(ValueError, match="GENERATION"):
    tpu_compile.topology_devices("v5e")
  with pytest.raises(SystemExit, match="--mfu"):
    tpu_compile.main(["--topology", "v5e:2x2", "--mfu", "0"])
