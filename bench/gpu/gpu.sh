#!/usr/bin/env bash
# w2v on one GPU: training, transcription and torch.compile, measured in one time-boxed command.
#
#   bench/gpu/gpu.sh --out DIR                  # on a GPU: within --budget (default 450 s) + the report
#   bench/gpu/gpu.sh --out DIR --dry-run        # on a CPU: tiny models, the same code paths (CI runs it)
#   bench/gpu/gpu.sh --out DIR --peak-tflops 989 --lm exp/lm/4gram.bin --audio data/some-flacs
#
# Writes DIR/gpu-bench.json and DIR/gpu-bench.md (bench/gpu/harness.py; docs/benchmarks.md#gpu).
# On a lent GPU machine run bench/gpu/gpu_run.sh instead: it installs what .gpu/ carries, runs the
# CUDA tests, then this.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ -z "${VIRTUAL_ENV:-}" && -f .venv/bin/activate ]]; then
  source .venv/bin/activate
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TRANSFORMERS_VERBOSITY=error HF_HUB_DISABLE_PROGRESS_BARS=1
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
# the same allocator setting for both implementations: less fragmentation in the largest-batch search
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

# a hard stop on top of bench/gpu/harness.py's own budget: --budget (450 s, dry run 240 s) + 30 s for the report
budget="" dry=0 prev=""
for arg in "$@"; do
  [[ "$arg" == "--dry-run" ]] && dry=1
  [[ "$arg" == --budget=* ]] && budget=${arg#--budget=}
  [[ "$prev" == "--budget" ]] && budget=$arg
  prev=$arg
done
budget=${budget%.*}
budget=${budget:-$([[ $dry == 1 ]] && echo 240 || echo 450)}
exec timeout -k 10 $((budget + 30)) "${PYTHON:-python3}" -m bench.gpu "$@"
