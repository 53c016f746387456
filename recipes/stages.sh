# Shared by the recipes' run.sh scripts (sourced, not run): timestamped log lines and the
# stage bookkeeping. The caller sets: stage, stop_stage (the --stage/--stop-stage range),
# force (true|false) and out (the experiment folder, which holds .done/N and timings.tsv).

# log MESSAGE: timestamped, with the recipe's calling line (frames in this file skipped), as
# icefall's recipes do
log() {
  local i=0
  while [ "${BASH_SOURCE[i+1]##*/}" = stages.sh ]; do i=$((i + 1)); done
  echo -e "$(date '+%Y-%m-%d %H:%M:%S') (${BASH_SOURCE[i+1]##*/}:${BASH_LINENO[i]}) $*"
}

# run_stage N NAME: true when stage N is within --stage..--stop-stage and not done yet
run_stage() {
  local n=$1 name=$2
  [ "$stage" -le "$n" ] && [ "$stop_stage" -ge "$n" ] || return 1
  if [ -f "$out/.done/$n" ] && ! $force; then
    log "Stage $n ($name): already done ($out/.done/$n); skipping"
    return 1
  fi
  log "Stage $n ($name)"
  stage_start=$(date +%s)
  return 0
}

# finish_stage N NAME: the .done marker and the wall time (replacing an earlier line for N)
finish_stage() {
  local n=$1 name=$2 secs=$(( $(date +%s) - stage_start ))
  touch "$out/.done/$n"
  { grep -v "^$n	" "$out/timings.tsv" 2>/dev/null || true; printf '%s\t%s\t%s\n' "$n" "$name" "$secs"; } \
    | sort -n > "$out/timings.tsv.tmp" && mv "$out/timings.tsv.tmp" "$out/timings.tsv"
  log "Stage $n ($name) done in ${secs} s"
}

# resume_flag DIR: --resume when a training run in DIR was interrupted
resume_flag() { [ -f "$1/last.pt" ] && echo "--resume" || true; }
