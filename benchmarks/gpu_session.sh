#!/usr/bin/env bash
# One prepared script for a lent GPU machine (one NVIDIA H100/H200, 16 CPU cores, no internet;
# at most 600 s per call, about 15 minutes of device time per session, start-up included).
#
# Phases
#   bash benchmarks/gpu_session.sh checks
#       1. checks that the Python modules the project needs import (installs the wheels of a
#          carried `.whl/` folder, offline, only when one is missing) and that torch sees a CUDA
#          device; stops at once with "error: no CUDA device" otherwise;
#       2. every GPU test of the project: `pytest -m gpu -q` (tests marked `gpu` across tests/);
#       3. the energy-descent benchmark: `benchmarks/descent.py --device cuda --repeats 5 --chunks 1,2`
#          (a failure is reported and tolerated; HAMUX is timed only where it is installed);
#       4. the training-throughput benchmark: `benchmarks/throughput.py --device cuda`
#          (hopfield's training loop against a hand-written PyTorch loop, imixer_tiny, batch 256).
#       Each step runs under `timeout` (150 + 100 + 50 s by default, ~300 s in all). The exit
#       status is that of the GPU tests; the benchmarks' failures are reported, not fatal.
#       Not run: benchmarks/compile_training.py has no --device flag and no timm comparison. It
#       times one training step (forward, label-smoothed cross-entropy, backward, clipping,
#       AdamW) of every *_tiny preset through torch.compile against eager, on the CPU (batch 128
#       of the bundled Fashion-MNIST subset), and reports the compiled/eager step-time ratio and
#       the compile warm-up; it is a CPU benchmark and stays one here.
#   bash benchmarks/gpu_session.sh cpu-descent
#       The CPU descent benchmark on the host's 16 cores (threads 2 and 16, each in its own pinned
#       process; ~150-300 s): whether the compiled descent still loses at 16 threads (it was 8.9x
#       slower than HAMUX's step there, docs/results.md). Optional, after the others.
#   bash benchmarks/gpu_session.sh train [DEADLINE_S] [DATA_DIR]
#       The 60-epoch Fashion-MNIST recipe that reached 93.02 % on one CPU seed
#       (benchmarks/results/fashion_mnist_cpu_re.md: --epochs 60 --batch-size 256 --lr 2e-3
#       --crop-padding 1 --random-erasing 0.25 --amp bf16; the trainer's defaults for the rest:
#       label smoothing 0.1, weight decay 0.05, 1 warm-up epoch, cosine to 1e-5, flips) for
#       mixer_tiny and imixer_tiny, seeds 0 1 2: all 6 runs side by side on the one GPU through
#       benchmarks/gpu_study.py, stopped at DEADLINE_S seconds (default 540, so a call ends
#       before the 600 s limit). Runs are launched with --resume: calling the phase again on the
#       same machine continues them from their last epoch. DATA_DIR: $HOPFIELD_DATA_DIR, else
#       .gpu/fashion-mnist (the four standard IDX .gz files). Writes
#       benchmarks/results/fashion_mnist_gpu_60ep.{json,md} and ends with
#       `RESULT fashion_mnist_60ep_<model>_mean <accuracy>` for each model whose 3 seeds finished.
#
# The calls a session makes (device tool `run`), the accuracy first:
#   0. here, once: `apt-get install -y dataset-fashion-mnist` and
#      `mkdir -p .gpu/fashion-mnist && cp $(dpkg -L dataset-fashion-mnist | grep 'ubyte.gz$') .gpu/fashion-mnist/`
#      (.gpu/ is ignored by git; ~31 MB, the tree that travels is ~9 MB: within the 64 MiB).
#   1. run(command="bash benchmarks/gpu_session.sh train 540", carry=[".gpu/fashion-mnist"], timeout_s=600)
#   2. the same train call again, at once: it resumes the unfinished runs and ends when they do.
#   3. run(command="bash benchmarks/gpu_session.sh checks", timeout_s=360) (needs no carry)
#   The 60-epoch schedule needs about 680 s of GPU time for the 6 runs (the 30-epoch study took
#   345 s on an H200: imixer_tiny ~10 s and mixer_tiny ~7 s per epoch side by side), hence two
#   calls: ~540 s, then ~150 s. The checkpoints live in runs/gpu_60ep on the device machine,
#   kept only while it stays warm (about 30 s after a call): make call 2 right after call 1
#   returns, or the runs start again from epoch 1. They are too large to carry (7.6 MB each).
#   Budget: start-up + 540 s + ~150 s + checks (<= 300 s) is more than one 15-minute lease, so
#   make call 3 only if `status` still shows budget_left_s >= ~360 s, else leave the checks to
#   another session (a session with only the checks to do makes call 3 alone).
#   Each call copies its log ($OUT/gpu_session_<phase>.log), the results files it wrote, and
#   results_<phase>.tar.gz (the same results plus, for train, each run's metrics.jsonl and
#   stdout.log) into $OUT, so they come back; unpack the tarball in the repository root.
#
# Optional wheels: a missing module (e.g. hamux and fastcore for descent.py's HAMUX column) can
# travel as wheels in an ignored `.whl/` folder (see the device tool's notes for `pip download`);
# add ".whl" to carry. They are installed with pip --no-index --no-deps into a temporary folder.
#
# Environment: PYTHON (.venv/bin/python if present, else python3), DRY_RUN=1 (print every
# command instead of running it), RUNS (runs/gpu_60ep), HOPFIELD_DATA_DIR, WHEELS (.whl),
# T_PYTEST=150 T_DESCENT=100 T_THROUGHPUT=50 (seconds per checks step), OUT (files that come back).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  echo "usage: bash benchmarks/gpu_session.sh checks" >&2
  echo "       bash benchmarks/gpu_session.sh cpu-descent" >&2
  echo "       bash benchmarks/gpu_session.sh train [DEADLINE_S=540] [DATA_DIR]" >&2
  exit 2
}

PHASE=${1:-}
case "$PHASE" in
  checks | cpu-descent) [ $# -le 1 ] || usage ;;
  train) [ $# -le 3 ] || usage ;;
  *) usage ;;
esac

DRY_RUN=${DRY_RUN:-0}
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
RESULTS=benchmarks/results
WHEELS=${WHEELS:-.whl}

# print a command; run it unless DRY_RUN=1
run() {
  local arg line=+
  for arg in "$@"; do
    if [[ $arg =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then line+=" $arg"
    elif [[ $arg != *"'"* ]]; then line+=" '$arg'"
    else line+=" $(printf '%q' "$arg")"; fi
  done
  echo "$line"
  if [ "$DRY_RUN" = 1 ]; then return 0; fi
  "$@"
}

# run a step under `timeout`; report how it ended without stopping the script
STATUS=()
step() {
  local name=$1 limit=$2 rc=0
  shift 2
  echo "=== $name (at most ${limit} s)"
  run timeout --kill-after=10 "$limit" "$@" || rc=$?
  case $rc in
    0) STATUS+=("$name: $([ "$DRY_RUN" = 1 ] && echo 'not run (DRY_RUN=1)' || echo ok)") ;;
    124 | 137) STATUS+=("$name: TIMEOUT after ${limit} s") ;;
    *) STATUS+=("$name: FAILED (exit $rc)") ;;
  esac
  return "$rc"
}

# modules every phase imports; hamux (descent.py's comparison) is optional
REQUIRED=(torch numpy scipy einops matplotlib tqdm safetensors pytest hypothesis)
missing_modules() {
  "$PYTHON" - "$@" <<'EOF'
import importlib.util
import sys

print(" ".join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))
EOF
}

ensure_python() {
  echo "=== python: $PYTHON"
  if [ "$DRY_RUN" = 1 ]; then
    echo "+ check that ${REQUIRED[*]} import (install $WHEELS/*.whl offline if one does not)"
    return 0
  fi
  local missing optional
  missing=$(missing_modules "${REQUIRED[@]}")
  optional=$(missing_modules hamux)
  if [ -n "$missing$optional" ] && compgen -G "$WHEELS/*.whl" >/dev/null; then
    local site="${TMPDIR:-/tmp}/hopfield-site"
    echo "missing: ${missing:-none} (optional: ${optional:-none}); installing $WHEELS/*.whl into $site"
    run "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$site" "$WHEELS"/*.whl
    export PYTHONPATH="$PYTHONPATH:$site"
    missing=$(missing_modules "${REQUIRED[@]}")
  fi
  if [ -n "$missing" ]; then
    echo "error: python modules missing: $missing (carry their wheels in $WHEELS/, see the header)" >&2
    exit 3
  fi
  if [ -n "$(missing_modules hamux)" ]; then
    echo "note: hamux is not installed: descent.py times hopfield only (no HAMUX ratio)"
  fi
}

ensure_cuda() {
  echo "=== CUDA"
  if ! run "$PYTHON" -c 'import sys, torch; ok = torch.cuda.is_available(); print("torch", torch.__version__, "cuda:", ok); sys.exit(0 if ok else 1)'; then
    echo "error: no CUDA device: torch.cuda.is_available() is False on this machine; run this" \
      "script on the lent GPU machine (device tool \`run\`)" >&2
    exit 2
  fi
  [ "$DRY_RUN" = 1 ] || nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
}

# results files changed since $MARK, copied into $OUT (8 files at most come back) and a tarball
MARK=$(mktemp)
trap 'rm -f "$MARK"' EXIT
bring_back() {
  [ -n "${OUT:-}" ] && [ "$DRY_RUN" != 1 ] || return 0
  local extra=("$@") changed=()
  mapfile -t changed < <(find "$RESULTS" -type f -newer "$MARK" | sort)
  tar -czf "$OUT/results_$PHASE.tar.gz" "${changed[@]}" "${extra[@]}" 2>/dev/null || true
  if [ "${#changed[@]}" -le 6 ]; then
    for f in "${changed[@]}"; do cp "$f" "$OUT/"; done
  fi
  echo "brought back under \$OUT: $(cd "$OUT" && echo ./*)"
}

checks() {
  ensure_python
  ensure_cuda
  local tests_rc=0
  step "GPU tests (pytest -m gpu)" "${T_PYTEST:-150}" \
    "$PYTHON" -m pytest -m gpu -q -p no:cacheprovider || tests_rc=$?
  step "descent benchmark (cuda)" "${T_DESCENT:-100}" \
    "$PYTHON" benchmarks/descent.py --device cuda --repeats 5 --chunks 1,2 ||
    echo "warning: benchmarks/descent.py failed or timed out (its CLI may have changed); going on" >&2
  step "throughput benchmark (cuda)" "${T_THROUGHPUT:-50}" \
    "$PYTHON" benchmarks/throughput.py --device cuda ||
    echo "warning: benchmarks/throughput.py failed or timed out; going on" >&2
  bring_back
  echo "=== summary"
  printf '%s\n' "${STATUS[@]}"
  return "$tests_rc"
}

# the earlier 8.9x of the compiled descent with 16 threads on this host: each thread count in its
# own pinned process (hopfield alone when hamux is not installed)
cpu-descent() {
  ensure_python
  step "descent benchmark (CPU, 2 and 16 threads)" "${T_CPU_DESCENT:-300}" \
    "$PYTHON" benchmarks/descent.py --device cpu --threads 2,16 --chunks 1,2 --repeats 5 \
    --name descent_gpuhost_pinned || true
  bring_back
  printf '%s\n' "${STATUS[@]}"
}

train() {
  local deadline=${1:-540}
  local data_dir=${2:-${HOPFIELD_DATA_DIR:-.gpu/fashion-mnist}}
  local runs=${RUNS:-runs/gpu_60ep} name=fashion_mnist_gpu_60ep
  case "$deadline" in
    '' | *[!0-9.]*) echo "error: DEADLINE_S must be a number of seconds, got '$deadline'" >&2; exit 2 ;;
  esac
  local f
  for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
    if [ ! -e "$data_dir/$f.gz" ] && [ ! -e "$data_dir/$f" ]; then
      if [ "$DRY_RUN" = 1 ]; then
        echo "note: $data_dir/$f.gz not found (a real run would stop here)"
      else
        echo "error: $data_dir/$f.gz not found: copy the Fashion-MNIST files into $data_dir" \
          "and carry it (see the header), or pass the folder as DATA_DIR" >&2
        exit 2
      fi
    fi
  done
  ensure_python
  ensure_cuda
  local ckpts
  ckpts=$( (find "$runs" -name last.pt 2>/dev/null || true) | wc -l)
  echo "=== train: $ckpts of 6 runs have a checkpoint in $runs (0: a fresh start)"
  run "$PYTHON" benchmarks/gpu_study.py --dataset fashion_mnist --data-dir "$data_dir" \
    --models mixer_tiny imixer_tiny --seeds 0 1 2 --epochs 60 --batch-size 256 --lr 2e-3 \
    --crop-padding 1 --random-erasing 0.25 --amp bf16 --device cuda \
    --deadline "$deadline" --runs "$runs" --name "$name"
  local logs=()
  if [ "$DRY_RUN" != 1 ]; then
    mapfile -t logs < <(find "$runs" \( -name metrics.jsonl -o -name stdout.log \) | sort)
  fi
  bring_back "${logs[@]}"
  echo "=== means over seeds ($RESULTS/$name.json)"
  if [ "$DRY_RUN" = 1 ]; then
    echo "+ print RESULT fashion_mnist_60ep_<model>_mean from $RESULTS/$name.json"
    return 0
  fi
  "$PYTHON" - "$RESULTS/$name.json" <<'EOF'
import json
import sys

record = json.load(open(sys.argv[1]))
seeds, crashed = record["settings"]["seeds"], 0
for model in record["settings"]["models"]:
    runs = [record["runs"][f"{model}/{s}"] for s in seeds]
    for r in runs:  # stopped at the deadline: SIGTERM (-15); anything else is a crash
        if not r["finished"] and r["returncode"] not in (0, None, -15, 143):
            crashed += 1
            print(f"FAILED {model} seed {r['seed']}: exit {r['returncode']} "
                  f"(see {record['settings']['runs']}/{model}-s{r['seed']}/stdout.log)")
    done = sum(r["finished"] for r in runs)
    epochs = ", ".join(str(r["epochs_done"]) for r in runs)
    if done == len(seeds):
        print(f"RESULT fashion_mnist_60ep_{model}_mean {record['summary'][model]['mean']:.4f}")
    else:
        print(f"PENDING {model}: {done}/{len(seeds)} seeds finished (epochs done: {epochs}); "
              "call `train` again on the same machine to resume")
sys.exit(1 if crashed else 0)
EOF
}

# the log comes back with $OUT (the device tool's folder), when there is one
if [ -n "${OUT:-}" ] && [ "$DRY_RUN" != 1 ]; then
  mkdir -p "$OUT"
  "$PHASE" "${@:2}" 2>&1 | tee -a "$OUT/gpu_session_$PHASE.log"
else
  "$PHASE" "${@:2}"
fi
