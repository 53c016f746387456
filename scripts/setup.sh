#!/usr/bin/env bash
# One-time set-up on a fresh Debian/Ubuntu machine; safe to re-run (each step skips what is done).
#   1. Debian packages: speech synthesis voices, sox, libsndfile, the KenLM build tools.
#   2. A virtual environment in .venv with torch 2.13.0 pinned by constraints.txt (so pip never
#      swaps in a multi-GB CUDA build on a CPU machine) and w2v installed with its dev extras.
#   3. KenLM's lmplz/build_binary built into tools/kenlm/bin.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
PYTHON=${PYTHON:-python3}

apt_packages=(espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts sox
  libsndfile1 build-essential cmake libboost-program-options-dev libboost-system-dev
  libboost-thread-dev libboost-test-dev zlib1g-dev libbz2-dev liblzma-dev)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# pip run with the noise of this machine's local package mirrors (missing index folders) left out
pip_quiet() {
  "$@" 2>&1 | { grep -v -e "is ignored: it is neither a file nor a directory" -e BuildBackendWarning || true; }
}

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.w2v-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  echo "setup: installing torch==2.13.0 and w2v[dev] into .venv (a few minutes the first time)"
  pip_quiet .venv/bin/python -m pip install -q --upgrade pip setuptools wheel
  pip_quiet .venv/bin/python -m pip install -q -c constraints.txt torch==2.13.0
  pip_quiet .venv/bin/python -m pip install -q -c constraints.txt -e '.[dev]'
  touch "$stamp"
fi

PYTHON=.venv/bin/python scripts/install_kenlm.sh
echo "setup: done (activate with: source .venv/bin/activate)"
