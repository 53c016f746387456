#!/usr/bin/env bash
# Gather into .gpu/ (git-ignored) what a lent GPU machine lacks, for the device tool to carry
# beside the working tree (`carry: [".gpu"]`; tree + carried files at most 64 MiB):
#
#   .gpu/whl/    wheels for the GPU machine's Python (CPython 3.12, x86-64, no registry there):
#                soundfile cffi pycparser soxr (audio), pyctcdecode pygtrie (beam search), and
#                kenlm, built here from its source package (PyPI has no kenlm wheels)
#   .gpu/src/    kenlm's source package: bench/gpu/gpu_run.sh builds it there if the wheel fails to load
#   .gpu/lm/     lm.bin + lm.bin.unigrams.txt: `w2v lm build` 4-gram (pruned 0 1 2 3, ~16 MB) of
#                ../shared/data/text, held-out files left out
#   .gpu/audio/  ../shared/data/real-mini (10 utterances, 49 s): training crops and transcription
#
# Run it in the checkout the device tool sends (the session's own), after `make setup`:
#   bench/gpu/gpu_pack.sh           # PY312=/path/to/python3.12 builds kenlm's wheel (default: python3.12
#                               # on PATH, else pyenv's 3.12); without one only the source travels
# Safe to re-run: each part is skipped when present (delete .gpu/ to start over).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
dest=.gpu
shared=${SHARED:-$root/../shared/data}
python=${PYTHON:-$([[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3)}
log() { echo "[gpu-pack] $*"; }
grep -qx "/.gpu/" .gitignore || { log ".gpu/ must be git-ignored (it is in .gitignore on main)"; exit 1; }
mkdir -p "$dest/whl" "$dest/src" "$dest/lm"

# 1. wheels for CPython 3.12 on manylinux x86-64 (the versions the CPU tests use)
pins=(soundfile==0.14.0 cffi==2.1.1 pycparser==3.12 soxr==1.1.0 pyctcdecode==0.5.0 pygtrie==2.6.2)
for pin in "${pins[@]}"; do
  name=${pin%%==*}
  if ! ls "$dest/whl/${name}"-*.whl >/dev/null 2>&1; then
    log "downloading $pin"
    "$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$dest/whl" "$pin" 2>&1 \
      | { grep -v "is ignored: it is neither a file nor a directory" || true; }
  fi
done

# 2. kenlm: the source package, and a wheel built with a local CPython 3.12 where there is one
if ! ls "$dest"/src/kenlm-*.tar.gz >/dev/null 2>&1; then
  log "downloading kenlm's source package"
  "$python" -m pip download -q --no-deps --no-binary :all: --no-build-isolation -d "$dest/src" kenlm==0.3.0 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
fi
py312=""
for cand in ${PY312:-} $(command -v python3.12 || true) "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12; do
  if [[ -x "$cand" ]] && "$cand" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
    py312=$cand
    break
  fi
done
if ls "$dest"/whl/kenlm-*.whl >/dev/null 2>&1; then
  log "kenlm wheel: present"
elif [[ -n "$py312" ]]; then
  log "building kenlm's wheel with $py312 (a few minutes)"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  "$py312" -m venv "$work/venv"
  "$work/venv/bin/python" -m pip install -q setuptools wheel 2>&1 | { grep -v "is ignored" || true; }
  "$work/venv/bin/python" -m pip wheel -q --no-deps --no-build-isolation -w "$dest/whl" "$dest"/src/kenlm-*.tar.gz \
    >"$work/build.log" 2>&1 || { tail -n 20 "$work/build.log"; log "kenlm wheel build failed"; exit 1; }
  "$work/venv/bin/python" -m pip install -q --no-index --no-deps --target "$work/t" "$dest"/whl/kenlm-*.whl
  PYTHONPATH="$work/t" "$work/venv/bin/python" -c "import kenlm" \
    || { log "the kenlm wheel does not import"; rm -f "$dest"/whl/kenlm-*.whl; exit 1; }
else
  log "no CPython 3.12 here: only kenlm's source travels (gpu_run.sh builds it there if a compiler is found)"
fi

# 3. the LM (KenLM's lmplz/build_binary: scripts/install_kenlm.sh)
if [[ ! -f "$dest/lm/lm.bin" ]]; then
  texts=()
  for f in "$shared"/text/*.txt.gz; do
    [[ $(basename "$f") == heldout_* ]] || texts+=("$f")
  done
  log "building the 4-gram from ${#texts[@]} text files"
  PYTHONPATH="$root" "$python" -m w2vcli lm build "${texts[@]}" --order 4 --prune "0 1 2 3" --memory 1G \
    --out "$dest/lm/lm.bin"
fi

# 4. real speech
if [[ ! -d "$dest/audio" ]]; then
  cp -r "$shared/real-mini" "$dest/audio"
  chmod -R u+w "$dest/audio"
fi

# 5. the device tool's limit: the working tree and the carried files, 64 MiB together
tree=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -n1 | cut -f1)
carried=$(du -sb "$dest" | cut -f1)
total=$((tree + carried))
log "$(ls "$dest/whl" | wc -l) wheels, LM $(du -h "$dest/lm/lm.bin" | cut -f1), audio $(du -sh "$dest/audio" | cut -f1);" \
  "tree $((tree / 1048576)) MiB + .gpu $((carried / 1048576)) MiB = $((total / 1048576)) MiB of 64"
if ((total > 60 * 1048576)); then
  log "too large for the device tool (64 MiB with the working tree): prune the LM harder"
  exit 1
fi
log "done: run bench/gpu/gpu_run.sh there (docs/benchmarks.md#gpu has the device tool's call)"
