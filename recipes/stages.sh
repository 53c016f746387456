# Shared by the recipes' run.sh scripts (sourced, not run): timestamped log lines and the
# stage bookkeeping. The caller sets: stage, stop_stage (the --stage/--stop-stage range),
# force (true|false) and out (the experiment folder, which holds .done/N and timings.tsv).
#
# A stage that runs once per seed or per labelled amount passes run_stage/finish_stage a
# folder under $out (e.g. seed-1) and a marker name (e.g. 3-10m): its .done marker and its
# timings.tsv line live in that folder, so deleting the folder redoes that unit alone.

# log MESSAGE: timestamped, with the recipe's calling line (frames in this file skipped), as
# icefall's recipes do
log() {
  local i=0
  while [ "${BASH_SOURCE[i+1]##*/}" = stages.sh ]; do i=$((i + 1)); done
  echo -e "$(date '+%Y-%m-%d %H:%M:%S') (${BASH_SOURCE[i+1]##*/}:${BASH_LINENO[i]}) $*"
}

# run_stage N NAME [DIR [KEY]]: true when stage N is within --stage..--stop-stage and its
# marker ($out/DIR/.done/KEY; default $out/.done/N) is absent, or --force is given
run_stage() {
  local n=$1 name=$2 dir=$out${3:+/$3} key=${4:-$1} unit=${3:+ [$3${4:+ $4}]}
  [ "$stage" -le "$n" ] && [ "$stop_stage" -ge "$n" ] || return 1
  if [ -f "$dir/.done/$key" ] && ! $force; then
    log "Stage $n ($name)$unit: already done ($dir/.done/$key); skipping"
    return 1
  fi
  log "Stage $n ($name)$unit"
  stage_start=$(date +%s)
  return 0
}

# finish_stage N NAME [DIR [KEY]]: the .done marker and the wall time, as a line
# "KEY<tab>NAME<tab>SECONDS<tab>END" of DIR's timings.tsv (END: when the stage ended, in seconds
# since 1970, so that stages run side by side count once in a total; an earlier line for KEY is
# replaced). Stages that run side by side may finish together: the file is rewritten under a lock
finish_stage() {
  local n=$1 name=$2 dir=$out${3:+/$3} key=${4:-$1} unit=${3:+ [$3${4:+ $4}]} end secs
  end=$(date +%s) secs=$(( end - stage_start ))
  mkdir -p "$dir/.done"
  touch "$dir/.done/$key"
  (
    flock 9
    { grep -v "^$key	" "$dir/timings.tsv" 2>/dev/null || true; printf '%s\t%s\t%s\t%s\n' "$key" "$name" "$secs" "$end"; } \
      | sort -n > "$dir/timings.tsv.tmp" && mv "$dir/timings.tsv.tmp" "$dir/timings.tsv"
  ) 9> "$dir/.done/.timings.lock"
  log "Stage $n ($name)$unit done in ${secs} s"
}

# resume_flag DIR: --resume when a training run in DIR was interrupted
resume_flag() { [ -f "$1/last.pt" ] && echo "--resume" || true; }
