#!/usr/bin/env bash
# w2v vs transformers benchmarks on this machine; appends a dated table to docs/benchmarks.md.
#
#   bench/run.sh            full run (about 20 min on two idle cores, exports cached)
#   bench/run.sh --quick    every RATIO line in under 5 minutes
#   bench/run.sh --only ctc_inference_base --no-docs
#   bench/run.sh --only cpu_anchors_small cpu_anchors_base cpu_anchors_base_layer   # CPU modes vs runtimes
#   python -m bench.suite.cpu_anchors --dry-run    # every runtime once on a tiny model (no results)
#
# Needs the dev environment (.venv with transformers, pyctcdecode, kenlm) and KenLM's programs
# (scripts/install_kenlm.sh) for the 4-gram, which is built once into bench/.cache/.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${VIRTUAL_ENV:-}" && -f .venv/bin/activate ]]; then
  source .venv/bin/activate
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TRANSFORMERS_VERBOSITY=error PYTHONWARNINGS=ignore
exec python -m bench.run "$@"
