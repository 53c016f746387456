#!/usr/bin/env bash
# Build KenLM's lmplz, build_binary and query from the `kenlm` source package on PyPI
# into tools/kenlm/bin (git-ignored). Safe to re-run: does nothing when they are built.
#
# Needs: build-essential cmake libboost-{program-options,system,thread,test}-dev zlib1g-dev
# libbz2-dev liblzma-dev (scripts/setup.sh installs them on Debian/Ubuntu).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/tools/kenlm"
python=${PYTHON:-python3}

if [ -x "$dest/bin/lmplz" ] && [ -x "$dest/bin/build_binary" ] && [ -x "$dest/bin/query" ]; then
  echo "kenlm: already built in $dest/bin"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "kenlm: fetching the source package"
mkdir -p "$dest"
if ! "$python" -m pip download --no-deps --no-binary :all: --no-build-isolation -q -d "$work" kenlm \
    >"$dest/download.log" 2>&1; then
  cat "$dest/download.log" >&2
  echo "kenlm: could not fetch the kenlm source package from PyPI" >&2
  exit 1
fi
tar -xzf "$work"/kenlm-*.tar.gz -C "$work"
src=$(find "$work" -maxdepth 1 -type d -name 'kenlm-*' | head -n1)
echo "kenlm: building lmplz build_binary query (about a minute)"
mkdir -p "$src/build" "$dest"
buildlog="$dest/build.log"
if ! (cd "$src/build" && cmake .. -DCMAKE_BUILD_TYPE=Release -DKENLM_MAX_ORDER=6 \
      && make -j"$(nproc)" lmplz build_binary query) >"$buildlog" 2>&1; then
  tail -n 30 "$buildlog" >&2
  echo "kenlm: build failed (full log: $buildlog). Build dependencies on Debian/Ubuntu:" >&2
  echo "  apt-get install -y build-essential cmake libboost-program-options-dev libboost-system-dev \\" >&2
  echo "    libboost-thread-dev libboost-test-dev zlib1g-dev libbz2-dev liblzma-dev" >&2
  exit 1
fi
mkdir -p "$dest/bin"
cp "$src/build/bin/lmplz" "$src/build/bin/build_binary" "$src/build/bin/query" "$dest/bin/"
# smoke test: a bigram model from two words, converted to binary and queried
echo "HELLO WORLD" | "$dest/bin/lmplz" -o 2 -S 100M -T "$work" --discount_fallback >"$work/t.arpa" 2>"$work/t.log" \
  && "$dest/bin/build_binary" "$work/t.arpa" "$work/t.bin" >>"$work/t.log" 2>&1 \
  && echo "HELLO WORLD" | "$dest/bin/query" "$work/t.bin" >>"$work/t.log" 2>&1 \
  || { cat "$work/t.log" >&2; echo "kenlm: the built programs do not run" >&2; exit 1; }
echo "kenlm: installed $dest/bin/{lmplz,build_binary,query}"
