#!/usr/bin/env bash
# Train difai-jax on a Cloud TPU VM slice (one host or a multi-host pod).
#
#   WORKDIR=gs://BUCKET/difai ./launch_tpu.sh [--dry-run] [--no-follow]
#   ./launch_tpu.sh --logs            # stream worker 0's training log again
#   ./launch_tpu.sh --delete [--yes]  # delete the slice
#
# Steps: (1) describe the TPU VM and create it when missing; (2) copy this checkout
# (`git archive HEAD`, so only committed files) to every worker and pip-install it with
# "jax[tpu]" into a venv; (3) start the same `python -m difai_jax.train` on every worker at once
# (--worker=all), detached with nohup so it survives a dropped connection; (4) stream the log.
# Settings come from environment variables; `--help` lists them with their current values.
set -euo pipefail

PROG=${BASH_SOURCE[0]##*/}
case "${BASH_SOURCE[0]}" in
  */*) REPO_ROOT=$(cd "${BASH_SOURCE[0]%/*}" && pwd) ;;
  *) REPO_ROOT=$PWD ;;
esac

# ---- settings: name, default, meaning --------------------------------------------------------
SETTINGS=(
  "TPU_NAME|difai|name of the TPU VM slice"
  "ZONE|us-central2-b|its zone (v4 slices are in us-central2-b)"
  "ACCELERATOR_TYPE|v4-32|slice type: v4-8 is one host, v4-32 four hosts"
  "RUNTIME_VERSION|tpu-ubuntu2204-base|VM image; v5e: v2-alpha-tpuv5-lite, v6e: v2-alpha-tpuv6e"
  "PROJECT||GCP project; empty: gcloud's configured default"
  "SPOT|0|1: a spot slice (--spot); on preemption train.py saves and stops"
  "PREEMPTIBLE|0|1: a legacy preemptible slice (--preemptible)"
  "CONFIG|configs/celebahq.py|training config, relative to the copied repository"
  "WORKDIR||required; gs://BUCKET/PATH on multi-host slices (relative: under \$HOME)"
  "EXTRA_ARGS||more train flags, split at whitespace, each quoted for the workers' shell"
  "PIP_EXTRAS|train|package extras installed next to \"jax[tpu]\" (libtpu is on PyPI)"
  "PYTHON||venv interpreter; empty: python3 if >= 3.11, else python3.11 (apt)"
  "REMOTE_DIR|difai-jax|code on the workers (under \$HOME unless absolute)"
  "VENV_DIR|difai-venv|venv on the workers (under \$HOME unless absolute)"
  "LOG_DIR|difai-logs|train.log and train.pid on the workers (under \$HOME unless absolute)"
  "LOGS_WORKER|0|worker(s) whose log is streamed: 0, 1-3 or all"
  "ASSUME_EXISTS|0|with --dry-run: 1 = the slice exists (no create line)"
)

for entry in "${SETTINGS[@]}"; do
  IFS='|' read -r name default _ <<< "$entry"
  # Keep a value from the environment; otherwise take the default.
  if [[ -z "${!name+set}" ]]; then
    printf -v "$name" '%s' "$default"
  fi
done

usage() {
  local text
  # read, not cat: --help and --dry-run need no program besides bash.
  IFS= read -r -d '' text <<EOF || true
Usage: $PROG [--dry-run] [--no-follow] | --logs | --delete [--yes] | --help

Creates (or reuses) a Cloud TPU VM slice, copies this checkout (git archive HEAD) to every worker,
installs it with "jax[tpu]", and starts
  python -m difai_jax.train --config \$CONFIG --workdir \$WORKDIR \$EXTRA_ARGS
on all workers at once (gcloud ... ssh --worker=all). Training runs detached (nohup, log in
\$LOG_DIR/train.log on each worker); this script then streams worker \$LOGS_WORKER's log, and
Ctrl-C stops only the stream. Multi-host runs get --coordinator_address=<worker 0 ip>:8476 and
JAX finds the process count and ids itself. Before --worker=all, add your key: ssh-add
~/.ssh/google_compute_engine.

Options:
  --dry-run    print every command (prefixed "+ ") instead of running it; gcloud is not called,
               and the slice is taken as missing unless ASSUME_EXISTS=1
  --no-follow  start training and return without streaming the log
  --logs       only stream the training log of worker \$LOGS_WORKER
  --delete     delete the slice (asks first unless --yes)
  --yes, -y    do not ask before deleting
  --help, -h   this text

Settings (environment variables; current value, then meaning):
EOF
  printf '%s' "$text"
  for entry in "${SETTINGS[@]}"; do
    IFS='|' read -r name default meaning <<< "$entry"
    printf '  %-16s = %-22s (default %s)\n      %s\n' "$name" "$(quote "${!name}")" \
      "$(quote "$default")" "$meaning"
  done
}

# ---- quoting and running -----------------------------------------------------------------------

# One shell word for $1: as-is when it only has safe characters, otherwise single-quoted.
quote() {
  local safe='^[A-Za-z0-9_@%+=:,./-]+$'
  if [[ $1 =~ $safe ]]; then
    printf '%s' "$1"
  else
    printf "'%s'" "${1//\'/\'\\\'\'}"
  fi
}

quote_all() {
  local out="" word
  for word in "$@"; do
    out+="${out:+ }$(quote "$word")"
  done
  printf '%s' "$out"
}

# A path on the workers as a word for their shell: absolute paths and gs:// as they are,
# anything else under $HOME (expanded remotely).
remote_path() {
  case "$1" in
    /* | gs://*) quote "$1" ;;
    "~/"*) printf '"$HOME"/%s' "$(quote "${1#\~/}")" ;;
    *) printf '"$HOME"/%s' "$(quote "$1")" ;;
  esac
}

DRY_RUN=0

# Print a command ("+ ..."), then run it unless --dry-run.
run() {
  if ((DRY_RUN)); then
    printf '+ %s\n' "$(quote_all "$@")"
  else
    printf '+ %s\n' "$(quote_all "$@")" >&2
    "$@"
  fi
}

die() {
  printf '%s: %s\n' "$PROG" "$1" >&2
  exit "${2:-1}"
}

# ---- arguments ---------------------------------------------------------------------------------
ACTION=launch
FOLLOW=1
YES=0
while (($#)); do
  case "$1" in
    --help | -h) usage; exit 0 ;;
    --dry-run) DRY_RUN=1 ;;
    --no-follow) FOLLOW=0 ;;
    --yes | -y) YES=1 ;;
    --logs | --delete)
      [[ $ACTION == launch ]] || die "--logs and --delete exclude each other" 2
      ACTION=${1#--}
      ;;
    *)
      printf '%s: unknown option %s\n\n' "$PROG" "$(quote "$1")" >&2
      usage >&2
      exit 2
      ;;
  esac
  shift
done

for flag in SPOT PREEMPTIBLE ASSUME_EXISTS; do
  [[ ${!flag} == 0 || ${!flag} == 1 ]] || die "$flag must be 0 or 1 (got $(quote "${!flag}"))" 2
done
((SPOT && PREEMPTIBLE)) && die "set at most one of SPOT=1 and PREEMPTIBLE=1" 2
[[ -n $TPU_NAME && -n $ZONE ]] || die "TPU_NAME and ZONE must not be empty" 2
if [[ $ACTION == launch && -z $WORKDIR ]]; then
  die "set WORKDIR (e.g. WORKDIR=gs://BUCKET/difai): checkpoints of a multi-host slice must go \
to storage every worker sees" 2
fi
if ((!DRY_RUN)) && ! command -v gcloud > /dev/null; then
  die "gcloud not found on PATH; install the Google Cloud CLI (or use --dry-run)"
fi

GCLOUD_TPU=(gcloud compute tpus tpu-vm)
LOCATION=(--zone "$ZONE")
[[ -n $PROJECT ]] && LOCATION+=(--project "$PROJECT")

LOG_FILE="$(remote_path "$LOG_DIR")/train.log"
PID_FILE="$(remote_path "$LOG_DIR")/train.pid"

follow_log() {
  run "${GCLOUD_TPU[@]}" ssh "$TPU_NAME" "${LOCATION[@]}" --worker="$LOGS_WORKER" \
    --command "tail -n 100 -F $LOG_FILE"
}

# ---- --logs / --delete -------------------------------------------------------------------------
if [[ $ACTION == logs ]]; then
  follow_log
  exit 0
fi

if [[ $ACTION == delete ]]; then
  if ((!DRY_RUN && !YES)); then
    read -r -p "Delete TPU VM $TPU_NAME in $ZONE (its disks too)? [y/N] " answer || answer=""
    [[ $answer == y || $answer == Y || $answer == yes ]] || die "not deleted"
  fi
  run "${GCLOUD_TPU[@]}" delete "$TPU_NAME" "${LOCATION[@]}" --quiet
  exit 0
fi

# ---- (1) the slice -----------------------------------------------------------------------------
CREATE=("${GCLOUD_TPU[@]}" create "$TPU_NAME" "${LOCATION[@]}"
  --accelerator-type "$ACCELERATOR_TYPE" --version "$RUNTIME_VERSION")
((SPOT)) && CREATE+=(--spot)
((PREEMPTIBLE)) && CREATE+=(--preemptible)
DESCRIBE=("${GCLOUD_TPU[@]}" describe "$TPU_NAME" "${LOCATION[@]}")

if ((DRY_RUN)); then
  run "${DESCRIBE[@]}" --format='value(state)'
  ((ASSUME_EXISTS)) || run "${CREATE[@]}"
  run "${DESCRIBE[@]}" --format='value(networkEndpoints[0].ipAddress)'
  COORDINATOR_IP='<worker-0-internal-ip>'
else
  printf '+ %s\n' "$(quote_all "${DESCRIBE[@]}" --format='value(state)')" >&2
  if state=$("${DESCRIBE[@]}" --format='value(state)' 2> /dev/null); then
    [[ $state == READY ]] || die "TPU VM $TPU_NAME exists but is $state; when PREEMPTED or \
TERMINATED delete it ($PROG --delete) and launch again, otherwise wait for READY"
    echo "$PROG: reusing TPU VM $TPU_NAME ($ACCELERATOR_TYPE setting ignored for it)" >&2
  else
    run "${CREATE[@]}"
  fi
  printf '+ %s\n' "$(quote_all "${DESCRIBE[@]}" \
    --format='value(networkEndpoints[0].ipAddress)')" >&2
  COORDINATOR_IP=$("${DESCRIBE[@]}" --format='value(networkEndpoints[0].ipAddress)')
  [[ -n $COORDINATOR_IP ]] || die "could not read worker 0's internal IP from describe"
fi

# ---- (2) code and packages on every worker -----------------------------------------------------
ARCHIVE="${TMPDIR:-/tmp}/difai-jax-$TPU_NAME.tar.gz"
if ((!DRY_RUN)); then
  git -C "$REPO_ROOT" rev-parse --git-dir > /dev/null 2>&1 \
    || die "$REPO_ROOT is not a git checkout: the code is copied with git archive HEAD"
  if [[ -n $(git -C "$REPO_ROOT" status --porcelain --untracked-files=no) ]]; then
    echo "$PROG: warning: uncommitted changes are NOT copied (git archive HEAD); commit first" >&2
  fi
fi
run git -C "$REPO_ROOT" archive --format=tar.gz -o "$ARCHIVE" HEAD
run "${GCLOUD_TPU[@]}" scp "$ARCHIVE" "$TPU_NAME:difai-jax.tar.gz" "${LOCATION[@]}" --worker=all

CODE=$(remote_path "$REMOTE_DIR")
VENV=$(remote_path "$VENV_DIR")
if [[ -n $PYTHON ]]; then
  PICK_PYTHON="py=$(quote "$PYTHON")"
else
  PICK_PYTHON="if python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then py=python3;\
 else py=python3.11; fi"
fi
PACKAGE="$CODE"
[[ -n $PIP_EXTRAS ]] && PACKAGE+="$(quote "[$PIP_EXTRAS]")"
INSTALL="set -e; mkdir -p $CODE; tar -xzf \"\$HOME\"/difai-jax.tar.gz -C $CODE;\
 rm -f \"\$HOME\"/difai-jax.tar.gz;\
 if [ ! -x $VENV/bin/python ]; then $PICK_PYTHON;\
 if ! \"\$py\" -m venv $VENV; then rm -rf $VENV; sudo apt-get update -qq;\
 sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \"\$py\" \"\$py\"-venv;\
 \"\$py\" -m venv $VENV; fi; fi;\
 $VENV/bin/pip install -q -U pip; $VENV/bin/pip install -q 'jax[tpu]' -e $PACKAGE"
run "${GCLOUD_TPU[@]}" ssh "$TPU_NAME" "${LOCATION[@]}" --worker=all --command "$INSTALL"

# ---- (3) the same train command on every worker ------------------------------------------------
read -r -a EXTRA <<< "$EXTRA_ARGS"
TRAIN="$VENV/bin/python -m difai_jax.train --config $(quote "$CONFIG")"
TRAIN+=" --workdir $(remote_path "$WORKDIR")"
TRAIN+=" --coordinator_address=$(quote "$COORDINATOR_IP:8476")"
((${#EXTRA[@]})) && TRAIN+=" $(quote_all "${EXTRA[@]}")"
START="set -e; mkdir -p $(remote_path "$LOG_DIR");\
 if [ -f $PID_FILE ] && kill -0 \"\$(cat $PID_FILE)\" 2>/dev/null; then\
 echo \"a training run is still going on \$(hostname) (pid \$(cat $PID_FILE))\" >&2; exit 1; fi;\
 cd $CODE; echo \"=== \$(date -u +%FT%TZ) launch_tpu.sh\" >> $LOG_FILE;\
 setsid nohup $TRAIN >> $LOG_FILE 2>&1 < /dev/null & echo \$! > $PID_FILE"
run "${GCLOUD_TPU[@]}" ssh "$TPU_NAME" "${LOCATION[@]}" --worker=all --command "$START"

# ---- (4) logs ----------------------------------------------------------------------------------
if ((FOLLOW)); then
  ((DRY_RUN)) || echo "$PROG: training runs detached; Ctrl-C stops only this log stream \
($PROG --logs streams it again, $PROG --delete deletes the slice)" >&2
  follow_log
fi
