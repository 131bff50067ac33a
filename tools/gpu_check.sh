#!/usr/bin/env bash
# The checks that need a GPU, as one script for the day one is at hand (about 10 minutes
# at most; each step has its own time limit, so one slow step cannot eat the others):
#   1. the CUDA unit tests (tests/test_cuda.py: every cell's tangent, the engine, a
#      population, AeLLE; and the engine's no-host-sync test in test_orthonormalize.py);
#   2. the engine benchmark on CUDA (benchmarks/engine.py --device cuda);
#   3. one chapter executed at the `paper` scale (CHAPTER, default chapter 03).
# It needs a Python with a CUDA build of torch, numpy, matplotlib, tqdm, ipywidgets and
# pytest (nbclient and ipykernel for step 3), and no network: lyaplib is used from this checkout.
# Logs and results go to $OUT (default gpu_check/); the summary says what passed.
#   PYTHON=python3 CHAPTER=chapters/02_qr_algorithm.ipynb bash tools/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
chapter=${CHAPTER:-chapters/03_rnn_dynamics.ipynb}
out=${OUT:-gpu_check}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

if ! "$python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: no CUDA device visible to $python (torch.cuda.is_available() is False)" >&2
  exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
  | tee "$out/gpu.txt" || true
"$python" -c "import torch, lyaplib; print('torch', torch.__version__, 'CUDA', torch.version.cuda, '| lyaplib', lyaplib.__version__)" \
  | tee -a "$out/gpu.txt"

status=()
step() {  # step NAME SECONDS COMMAND...: run with a time limit, log, record the outcome
  local name=$1 limit=$2; shift 2
  echo "== $name (limit ${limit} s)"
  local began=$SECONDS
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  tail -n 25 "$out/$name.log"
  local verdict=passed
  [ $rc -eq 124 ] && verdict="timed out" || { [ $rc -ne 0 ] && verdict="failed (rc $rc)"; }
  status+=("$name: $verdict in $((SECONDS - began)) s")
}

step cuda_tests 180 "$python" -m pytest -q -p no:cacheprovider -rs \
  tests/test_cuda.py tests/test_orthonormalize.py
step engine_benchmark 180 "$python" benchmarks/engine.py --device cuda --json "$out/engine.json"
if "$python" -c "import nbclient, ipykernel" 2>/dev/null; then
  LYAPLIB_SCALE=paper LYAPLIB_DOWNLOAD=0 step paper_chapter 240 \
    "$python" tools/run_notebook.py "$chapter" "$out" --timeout 230
else
  status+=("paper_chapter: skipped (nbclient or ipykernel is not installed)")
fi

echo "== summary"
printf '%s\n' "${status[@]}" | tee "$out/summary.txt"
! grep -qv ": passed in" "$out/summary.txt"
