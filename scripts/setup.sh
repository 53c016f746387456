#!/usr/bin/env bash
# One-time set-up on a fresh Debian/Ubuntu machine; safe to re-run (each step skips what is done).
# Prints one line per step; the installers' own output goes to tools/setup.log (shown if one fails).
#   1. Debian packages: speech synthesis voices, sox, libsndfile, the KenLM build tools, installed
#      with apt-get, through sudo when not run as root.
#   2. A virtual environment in .venv with torch 2.13.0 pinned by constraints.txt (so pip never
#      swaps in a multi-GB CUDA build on a CPU machine) and w2v installed with its dev extras.
#   3. KenLM's lmplz/build_binary built into tools/kenlm/bin.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
PYTHON=${PYTHON:-python3}

mkdir -p tools
log="$root/tools/setup.log"  # every installer's own output goes here; shown only when a step fails
: >"$log"
quietly() {
  if ! "$@" >>"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "setup: failed: $* (full log: $log)" >&2
    exit 1
  fi
}

apt_packages=(espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts sox
  libsndfile1 build-essential cmake libboost-program-options-dev libboost-system-dev
  libboost-thread-dev libboost-test-dev zlib1g-dev libbz2-dev liblzma-dev)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  echo "setup: installing ${#missing[@]} Debian packages with ${sudo_cmd:+sudo }apt-get (a few minutes): ${missing[*]}"
  quietly $sudo_cmd apt-get update -qq
  quietly $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  quietly "$PYTHON" -m venv .venv
fi
stamp=.venv/.w2v-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  echo "setup: installing torch==2.13.0 (CPU build) and w2v[dev] into .venv (a few minutes the first time)"
  quietly .venv/bin/python -m pip install -q --upgrade pip setuptools wheel
  quietly .venv/bin/python -m pip install -q -c constraints.txt torch==2.13.0
  quietly .venv/bin/python -m pip install -q -c constraints.txt -e '.[dev]'
  touch "$stamp"
fi

PYTHON=.venv/bin/python scripts/install_kenlm.sh
echo "setup: done (activate with: source .venv/bin/activate)"
