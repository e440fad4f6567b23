#!/usr/bin/env bash
# The GPU rows of benchmarks/RESULTS.md in one call: about 7 minutes on one H200.
#
#   bash benchmarks/device_suite.sh [RESULTS_FILE]            # on the GPU machine
#   bash benchmarks/device_suite.sh --dry-run [RESULTS_FILE]  # or DRY_RUN=1: every step on CPU,
#                                                             # tiny sizes (checks the script)
#
# Run from the repository root. RESULTS_FILE (default $OUT/device_suite.md when $OUT is set,
# else device_suite.md) collects one section per measurement, in RESULTS.md's format; the log of
# every step goes to RESULTS_FILE's folder as device_suite.log. A step that fails or runs past
# its time limit leaves a "not measured (...)" section instead, and the suite goes on. The steps
# share a budget, SUITE_BUDGET_S (default 450 s on the GPU, 3600 s for the dry run): a step
# gets what is left of it at most, and once it is spent the remaining steps are not started.
# Each step has its own time limit (GPU seconds; x LIMIT_SCALE, default 5, in the dry run).
#
# Steps (each a benchmarks module; GPU sizes / CPU dry-run sizes):
#   1. DiFAI train step, 256 px, paper widths, FFHQ-shape pSp, batch 8: TF32 (the configs'
#      "default" policy), bfloat16 (every network's compute dtype), float32 ("highest");
#      img/s, MFU (benchmarks/peaks.py, the column of each precision), memory, and the input
#      pipeline (toy source, 8 workers) against the step.            / demo 64 px, batch 4
#   2. Inference, K = 1, 4, 8 completions of one 256 px face.        / demo 64 px, K = 1, 4
#   3. StyleGAN2 forward, 256 / 1024 px, batch 1 / 4, against rosinality's CUDA ops.
#                                                                     / 64 px, batch 1 (CPU ops)
#   4. Evaluation img/s: difai_jax.evaluate on the shipped toy-difai (64 px; no trained 256 px
#      run ships), random metric networks, one mask bucket.
#
# What the machine needs, all offline (the GPU machine reaches no package index):
# - JAX with CUDA and CUDA torch: used when importable; otherwise the script tries
#   `pip install "jax[cuda13]" torch`, which needs the index.
# - this repo's pure-Python dependencies that the machine's image lacks (ml_collections, grain,
#   clu): installed from ./.whl when the caller carried it there, e.g. prepared here with
#       bash benchmarks/device_suite.sh --fetch-wheels    (pip download into ./.whl)
#   and passed with the tool's carry: [".whl"]; else from the index, if reachable.
# - rosinality/stylegan2-pytorch for step 3: a checkout at $TORCH_REPO, default
#   shared/stylegan2-pytorch (the caller copies it there: shared/ travels with the working
#   tree; its .py / .cu / .cpp files are ~300 KB). Without it step 3 says "not measured".
set -u

DRY_RUN=${DRY_RUN:-0}
FETCH_WHEELS=0
RESULTS_FILE=""
for arg in "$@"; do
  case "$arg" in
    --dry-run|--dry_run) DRY_RUN=1 ;;
    --fetch-wheels|--fetch_wheels) FETCH_WHEELS=1 ;;
    -h|--help) sed -n '2,36p' "$0"; exit 0 ;;
    -*) echo "device_suite.sh: unknown option $arg (known: --dry-run, --fetch-wheels)" >&2; exit 2 ;;
    *) RESULTS_FILE=$arg ;;
  esac
done
if [ ! -f benchmarks/device_suite.sh ]; then
  echo "device_suite.sh: run it from the repository root" >&2; exit 2
fi
PY=${PYTHON:-python3}

# Wheels of the pure-Python dependencies the GPU image lacks, for Python 3.12 on x86-64.
WHEELS="ml-collections==1.1.0 grain==0.2.18 array-record portpicker clu==0.0.12"
WHEEL_DIR=${WHEEL_DIR:-.whl}
if [ "$FETCH_WHEELS" = 1 ]; then
  mkdir -p "$WHEEL_DIR"
  if [ "$WHEEL_DIR" = .whl ]; then   # keep the wheels out of git, as the tool's notes say
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  fi
  for w in $WHEELS; do
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$WHEEL_DIR" "$w" \
      || { echo "device_suite.sh: could not download $w" >&2; exit 1; }
  done
  ls -l "$WHEEL_DIR"
  exit 0
fi

if [ -z "$RESULTS_FILE" ]; then
  RESULTS_FILE=${OUT:+$OUT/}device_suite.md
fi
mkdir -p "$(dirname "$RESULTS_FILE")"
RESULTS_FILE=$(cd "$(dirname "$RESULTS_FILE")" && pwd)/$(basename "$RESULTS_FILE")
LOG=$(dirname "$RESULTS_FILE")/device_suite.log
: > "$LOG"
export DIFAI_BENCH_RESULTS=$RESULTS_FILE PYTHONUNBUFFERED=1
START=$(date +%s)
log() { echo "[device_suite $(( $(date +%s) - START )) s] $*" | tee -a "$LOG"; }

not_measured() {   # section title, reason
  printf '\n## %s\n\nnot measured (%s)\n' "$1" "$2" >> "$RESULTS_FILE"
  log "$1: not measured ($2)"
}

step() {   # time limit (s), section title, command...; returns 0 when the command succeeded
  local limit=$(( $1 * LIMIT_SCALE )) title=$2; shift 2
  local left=$(( BUDGET - $(date +%s) + START ))
  if [ "$left" -lt 30 ]; then
    not_measured "$title" "the suite's ${BUDGET} s budget was spent before this step"
    return 1
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  log "start: $title (limit ${limit} s): $*"
  timeout --kill-after=10 "$limit" "$@" >> "$LOG" 2>&1
  local rc=$?
  if [ $rc = 124 ] || [ $rc = 137 ]; then
    not_measured "$title" "ran past its ${limit} s limit on this machine"
  elif [ $rc != 0 ]; then
    not_measured "$title" "failed with exit status $rc: $(tail -n 1 "$LOG" | cut -c1-200)"
  else
    log "done: $title"
  fi
  return $(( rc != 0 ))
}

# ---- environment ----
if ls "$WHEEL_DIR"/*.whl > /dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/device_suite_site \
    "$WHEEL_DIR"/*.whl >> "$LOG" 2>&1 && export PYTHONPATH=/tmp/device_suite_site${PYTHONPATH:+:$PYTHONPATH}
fi
if [ "$DRY_RUN" = 1 ]; then
  export JAX_PLATFORMS=cpu CUDA_VISIBLE_DEVICES=""
else
  if ! "$PY" -c "import jax, sys; sys.exit(jax.default_backend() != 'gpu')" >> "$LOG" 2>&1; then
    log "JAX sees no GPU: pip install jax[cuda13]"
    "$PY" -m pip install -q "jax[cuda13]" >> "$LOG" 2>&1 || log "pip install jax[cuda13] failed"
  fi
  if ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" >> "$LOG" 2>&1; then
    log "torch sees no CUDA: pip install torch"
    "$PY" -m pip install -q torch >> "$LOG" 2>&1 || log "pip install torch failed"
  fi
fi
MISSING=$("$PY" - <<'EOF' 2>>"$LOG"
import importlib
print(" ".join(m for m in ("jax", "flax", "optax", "orbax.checkpoint", "ml_collections", "grain",
                           "clu", "PIL", "scipy", "absl")
               if importlib.util.find_spec(m.split(".")[0]) is None))
EOF
)
if [ -n "$MISSING" ]; then
  log "missing Python packages: $MISSING; trying pip install -e . (needs the package index)"
  "$PY" -m pip install -q -e . >> "$LOG" 2>&1 || log "pip install -e . failed"
fi
"$PY" -c "import jax, torch; print('jax', jax.__version__, jax.devices(), '| torch', torch.__version__, 'cuda', torch.cuda.is_available())" 2>&1 | tee -a "$LOG"
if [ ! -f "$RESULTS_FILE" ]; then
  printf '# Benchmarks on %s\n\n' \
    "$( ("$PY" -c 'from benchmarks import common; print(common.machine())' 2>/dev/null) || hostname)" \
    > "$RESULTS_FILE"
fi

# ---- measurements ----
if [ "$DRY_RUN" = 1 ]; then
  BUDGET=${SUITE_BUDGET_S:-3600}
  LIMIT_SCALE=${LIMIT_SCALE:-5}   # a step's GPU time limit x 5: compiling on 2 CPU cores
  TRAIN="--quick --steps 1 --pipeline_seconds 1"
  INFER="--quick"
  SG2="--sizes 64 --batches 1 --iters 1"
  EVAL_IMAGES=2; EVAL_BATCH=2
else
  BUDGET=${SUITE_BUDGET_S:-450}
  LIMIT_SCALE=${LIMIT_SCALE:-1}
  TRAIN="--config celebahq --psp ffhq --batch 8 --steps 5 --pipeline_seconds 3 --workers 8"
  INFER="--config celebahq --psp ffhq --ks 1,4,8 --iters 3"
  SG2="--sizes 256,1024 --batches 1,4 --iters 5"
  EVAL_IMAGES=512; EVAL_BATCH=64
fi

for prec in "default float32" "default bfloat16" "highest float32"; do
  set -- $prec
  title="DiFAI train step ($1 / $2)"
  [ "$prec" = "default float32" ] && title="DiFAI train step"   # the configs' own setting
  step 120 "$title" \
    "$PY" -m benchmarks.train_step $TRAIN --precision "$1" --dtype "$2" --write_results
done

step 120 "Inference (K completions of one face)" \
  "$PY" -m benchmarks.inference $INFER --write_results

TORCH_REPO=${TORCH_REPO:-shared/stylegan2-pytorch}
if [ -f "$TORCH_REPO/model.py" ] && [ -d "$TORCH_REPO/op" ]; then
  step 180 "StyleGAN2 generator forward (Flax vs PyTorch original)" \
    "$PY" -m benchmarks.stylegan2_forward --torch-repo "$TORCH_REPO" $SG2 --write_results
else
  not_measured "StyleGAN2 generator forward (Flax vs PyTorch original)" \
    "no rosinality/stylegan2-pytorch checkout at $TORCH_REPO: copy one into shared/stylegan2-pytorch or set TORCH_REPO"
fi

EVAL_DIR=$(mktemp -d)
EVAL_TITLE="Evaluation (toy-difai, 64 px)"
EVAL_ARGS="--workdir toy-difai --buckets 10-20 --max_images $EVAL_IMAGES --batch_size $EVAL_BATCH --random_metric_weights"
if step 120 "$EVAL_TITLE" "$PY" -m difai_jax.evaluate $EVAL_ARGS --eval_dir "$EVAL_DIR"; then
  RATE=$(grep -o 'images | [0-9.]* img/s' "$LOG" | tail -n 1 | grep -o '[0-9.]* img/s')
  {
    printf '\n## %s\n\n' "$EVAL_TITLE"
    printf '`python -m difai_jax.evaluate %s`: pipeline + SSIM / MS-SSIM / LPIPS / FID Inception ' "$EVAL_ARGS"
    printf 'per batch, measured after the first (compiling) batch: **%s**.\n' \
      "${RATE:-no rate printed (a single batch)}"
  } >> "$RESULTS_FILE"
fi
rm -rf "$EVAL_DIR"

log "all steps finished in $(( $(date +%s) - START )) s; results in $RESULTS_FILE"
