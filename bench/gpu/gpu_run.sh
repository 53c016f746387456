#!/usr/bin/env bash
# The one command for a lent GPU machine (docs/benchmarks.md#gpu gives the device tool's call).
# Runs from the repository root with .gpu/ carried (bench/gpu/gpu_pack.sh made it), within 575 s:
#
#   1. installs the carried wheels with --no-index into /tmp/w2v-site (nothing is fetched); if
#      kenlm's wheel does not import there, builds it from the carried source in the background
#   2. pytest -m cuda tests/test_cuda.py               (at most 170 s)
#   3. bench/gpu/gpu.sh --out OUT with what is left         (at most 450 s of measurements)
#
#   bash bench/gpu/gpu_run.sh [OUT]        OUT: $OUT when the device tool runs it, else gpu-out/
#
# OUT gets: gpu-bench.json, gpu-bench.md, gpu-run.log (everything printed), pytest-cuda.xml,
# env.txt (GPU, driver, Python and package versions) and, if kenlm was built there, kenlm-build.log.
# Parts that cannot run say why in one line (no LM: the LM runs are skipped) and the rest goes on.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${1:-${OUT:-gpu-out}}
mkdir -p "$out"
out=$(cd "$out" && pwd)
DEADLINE=575 # seconds for all of it: the device tool's limit for one command is 600
TEST_LIMIT=170

main() {
  local start=$SECONDS py=${PYTHON:-python3} site=/tmp/w2v-site kenlm_pid=""
  log() { echo "[gpu-run $((SECONDS - start))s] $*"; }
  export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 CUBLAS_WORKSPACE_CONFIG=:4096:8
  export PYTHONPATH="$PWD:$site${PYTHONPATH:+:$PYTHONPATH}"
  {
    nvidia-smi
    "$py" -c "import sys, torch; print(sys.version); print('torch', torch.__version__, 'CUDA', torch.version.cuda,
      'available', torch.cuda.is_available())"
    "$py" -m pip list 2>/dev/null | grep -i -E "^(torch|transformers|numpy|typer|rich|click|sentencepiece|safetensors|pytest|hypothesis) "
  } >"$out/env.txt" 2>&1
  log "$(grep -m1 -o 'NVIDIA [A-Z0-9 ]*' "$out/env.txt" || echo 'no nvidia-smi'); $("$py" -V 2>&1)"

  if ls .gpu/whl/*.whl >/dev/null 2>&1; then
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .gpu/whl/*.whl \
      || log "warning: the carried wheels did not all install"
  else
    log "no .gpu/whl: run bench/gpu/gpu_pack.sh here and carry .gpu (soundfile is needed)"
  fi
  local missing=()
  for m in soundfile soxr pyctcdecode kenlm; do
    "$py" -c "import $m" 2>/dev/null || missing+=("$m")
  done
  if [[ " ${missing[*]} " == *" kenlm "* ]] && ls .gpu/src/kenlm-*.tar.gz >/dev/null 2>&1 && command -v g++ >/dev/null; then
    log "kenlm's wheel does not import here: building it from source in the background (log: kenlm-build.log)"
    (timeout 300 "$py" -m pip wheel -q --no-deps --no-build-isolation -w /tmp/w2v-kenlm .gpu/src/kenlm-*.tar.gz \
      && "$py" -m pip install -q --no-index --no-deps --target "$site" /tmp/w2v-kenlm/kenlm-*.whl) \
      >"$out/kenlm-build.log" 2>&1 &
    kenlm_pid=$!
  fi
  log "missing after install: ${missing[*]:-nothing}"
  if [[ -f .gpu/lm/lm.bin ]]; then
    export W2V_TEST_LM=$PWD/.gpu/lm/lm.bin
  else
    log "no .gpu/lm/lm.bin: the LM runs are skipped"
  fi

  log "CUDA tests (at most ${TEST_LIMIT} s)"
  timeout -k 5 "$TEST_LIMIT" "$py" -m pytest -m cuda tests/test_cuda.py -q -rs -p no:cacheprovider \
    --junitxml "$out/pytest-cuda.xml"
  local tests_rc=$?
  log "CUDA tests: exit $tests_rc$([[ $tests_rc == 124 ]] && echo ' (time limit)')"

  if [[ -n "$kenlm_pid" ]]; then
    wait "$kenlm_pid" && log "kenlm built and installed" || log "kenlm could not be built: the LM runs are skipped (kenlm-build.log)"
  fi
  local left=$((DEADLINE - (SECONDS - start) - 40)) # 40 s: the report and bench/gpu/gpu.sh's margin
  local budget=$((left < 450 ? left : 450)) bench_rc=0
  if ((budget < 100)); then
    log "benchmark skipped: only ${left} s left"
    bench_rc=1
  else
    log "benchmark, budget ${budget} s"
    # shellcheck disable=SC2086  # W2V_BENCH_ARGS: extra options (--dry-run proves this script on a CPU)
    bash bench/gpu/gpu.sh --out "$out" --budget "$budget" ${W2V_BENCH_ARGS:-}
    bench_rc=$?
  fi
  log "done: CUDA tests exit $tests_rc, benchmark exit $bench_rc; results in $out"
  return $((tests_rc != 0 || bench_rc != 0))
}

main 2>&1 | tee "$out/gpu-run.log"
exit "${PIPESTATUS[0]}"
