#!/usr/bin/env bash
# The offline wav2vec 2.0 demo: does self-supervised pretraining make 10 minutes of labels go
# further than training from scratch? Everything runs on two CPU cores, with no download:
# the speech is synthesized (`w2v prepare synth`), the LM text ships with w2v.
#
# Two tasks (--task):
#   commands  (default) a closed domain: spoken commands to a voice assistant from a grammar of
#             about 200 words (names, digit strings, times, days, dates, rooms, devices, cities;
#             local/domain.py), 2 h of speech. Dev and test have unseen speakers and unseen
#             sentences (new word combinations); the LM is the grammar's text without them.
#   open      open-vocabulary English sentences (w2v's shipped public-domain list), 4 h of
#             speech: far harder than two cores can learn in 45 minutes (docs/demo-results.md)
#
#   recipes/demo/run.sh                 # the demo (target: under 45 minutes on 2 CPU cores): fine-tunes
#                                       # the shipped pretrained checkpoint (recipes/demo/pretrained/)
#   recipes/demo/run.sh --pretrain      # ... and pretrains it first, as the shipped one was made
#   recipes/demo/run.sh --quick         # every stage on tiny sizes, a smoke test (< 5 minutes)
#   recipes/demo/run.sh --seeds 3       # stages 2-4 and 6 for seeds 0, 1, 2: mean and spread
#   recipes/demo/run.sh --curve         # also the label-efficiency curve (1m, 10m, 1h of labels)
#   recipes/demo/run.sh --stage 6 --stop-stage 7 --force   # redo decoding and scoring only
#
# Stages (each one or a few `w2v` calls; a finished stage leaves a .done marker and is skipped
# on a re-run; remove that file, or use --force, to redo it). Stages 2-4 and 6 run once per
# seed (markers in OUT/seed-K/.done/), 3, 4 and 6 once per labelled amount too (marker N-AMOUNT):
#   1  prepare    w2v prepare synth: train-clean (hours of speech, 32 speakers), dev-clean and
#                 test-clean (10 min each, 4 unseen speakers each, unseen sentences);
#                 w2v prepare librispeech on it; w2v prepare subset: the labelled subsets of
#                 train-clean (whole utterances, spread over speakers), nested: each drawn from
#                 the next larger one. Drawn with seed 0 whatever --seeds says, as are the corpus
#                 and the LM: the seeds vary the training runs only.
#   2  pretrain   w2v pretrain on all of train-clean, ignoring its transcripts (conf/pretrain.toml).
#                 Without --pretrain (the default for --task commands), the shipped checkpoint
#                 recipes/demo/pretrained/commands/model.pt stands in for it: made by this stage
#                 (20 000 updates, ~70 minutes of 2 cores; pretrained/README.md says how and when),
#                 as users fine-tune a published model. The stage then only checks its checksum
#   3  finetune   w2v finetune from the pretrained model on the labelled subset (conf/finetune.toml)
#   4  scratch    the same fine-tuning from a random init: same labels, same updates, same code
#                 (conf/finetune-scratch.toml; its masking is its own, as each row's is chosen
#                 on its dev WER). Runs beside stage 3 of the same seed and amount (--jobs)
#   5  lm         w2v lm build: a 4-gram on w2v's shipped public-domain sentence list, with the
#                 dev and test sentences removed (--exclude)
#   6  decode     w2v transcribe the test set with both models: greedy, and with the 4-gram
#                 (LM weight and word bonus tuned on dev with `--tune`; fixed under --quick)
#   7  score      w2v score (each hypothesis file newer than its score); prints the results table
#                 and writes it (default run: docs/demo-results.md and .json, with the curves in
#                 docs/demo-results.png). Never skipped: it is cheap and follows the options
#
# Layout of OUT (default recipes/demo/exp, --quick: recipes/demo/exp-quick; both git-ignored):
#   corpus/{train-clean,dev-clean,test-clean}/SPK/CHAP/SPK-CHAP-UTT.flac   synthesized speech
#   data/{train-clean,dev-clean,test-clean}.jsonl, data/train-AMOUNT.jsonl, data/vocab.json
#   lm/4gram.bin        KenLM binary (+ 4gram.bin.unigrams.txt)
#   seed-K/pt/          pretraining with seed K (--pretrain): last.pt, best.pt, metrics.jsonl, config.toml
#   seed-K/ft-pretrained-AMOUNT/  fine-tuned from seed-K/pt/last.pt (the shipped model without
#                       --pretrain) on data/train-AMOUNT.jsonl:
#                       last.pt (decoded), best.pt (by dev WER), metrics.jsonl
#   seed-K/ft-scratch-AMOUNT/     fine-tuned from random init
#   seed-K/decode/{pretrained,scratch}-AMOUNT/{greedy,lm}.hyp.jsonl, *.score.json, tune.jsonl,
#                       lm-weights.txt, details-*/
#   timings.tsv, seed-K/timings.tsv   wall seconds per stage (shared / per-seed stages)
#   invocations.tsv     date, load average (1, 5, 15 min), commit and command of each run.sh call
#   results.md, results.json, results.png (--quick)
#   log/stage-N.log, seed-K/log/stage-N[-AMOUNT].log   full output of each stage
#
# Options:
#   --stage N, --stop-stage N   the range of stages to run (default 1-7)
#   --out DIR    the experiment folder
#   --task T     commands (default) or open (see above); open writes OUT=exp-open and
#                docs/demo-results-open.md by default
#   --pretrain   pretrain (stage 2) instead of fine-tuning the shipped checkpoint: OUT defaults
#                to exp-pretrain, the page to docs/demo-results-pretrain.md. Each seed then
#                pretrains its own model (~70 minutes of 2 cores each at 20 000 updates).
#                --quick and --task open always pretrain: no checkpoint is shipped for them
#   --pretrain-updates N   pretraining updates (default: conf/pretrain.toml's 20 000; 5000 take
#                ~18 minutes and gave 38.5 % test WER over 3 seeds with the fine-tuning of
#                that day, before speed perturbation; docs/demo-results.md)
#   --quick      tiny sizes and configs (conf/quick), labelled amounts 1m/2m/4m
#   --seeds N    run stages 2-4 and 6 for seeds 0..N-1 (default 1). Each seed costs what these
#                stages cost once; without --pretrain, every seed fine-tunes the one shipped
#                checkpoint, so a seed changes fine-tuning and the baseline only
#   --labels A   the labelled amount of the main table (default 10m; --quick 2m). An amount is
#                minutes or hours: 10m, 1h, 0.5h; any amount not yet drawn is drawn in stage 3
#   --curve [A,A,...]  the label-efficiency curve: stages 3, 4 and 6 also for these amounts
#                (default 1m,10m,1h; --quick 1m,2m,4m), plotted as test WER against labelled
#                minutes. Off by default: every amount beside --labels costs about stages 3, 4
#                and 6 again per seed (~19 minutes at 2500 updates, 2026-12-04): the number of
#                updates, not the amount of labels, sets the fine-tuning time
#   --results F  where stage 7 writes the page, and its numbers as JSON beside it (F with .json;
#                default: docs/demo-results.md for the full demo, OUT/results.md under --quick,
#                so a smoke test never touches docs/).
#                Notes by hand below the line "<!-- notes by hand below: kept when the recipe
#                rewrites this page -->" survive the rewrite
#   --jobs N     fine-tunings run at once (default 2 on a machine with 2 or more cores, else 1):
#                stages 3 and 4 of a seed and amount run side by side, each with 1/N of the
#                cores (--threads), their output prefixed [pretrained] / [scratch] (the full
#                logs in seed-K/log/). The small demo model hardly uses a second thread, so this
#                cuts the demo's wall time by about a third; --jobs 1 runs them one after the other
#   --force      run the stages in range even when done (a training stage whose folder holds a
#                last.pt resumes from it: delete the folder, e.g. OUT/seed-0/pt, to train again)
#
# Needs: `make setup` (or scripts/setup.sh): the .venv with w2v, the Debian voices, and
# KenLM's lmplz/build_binary in tools/kenlm/bin. Uses matplotlib for the plot if installed.
set -euo pipefail

recipe=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$recipe/../.." && pwd)
cmd="recipes/demo/run.sh${*:+ $*}"

stage=1
stop_stage=7
quick=false
task=commands
out=""
seeds=1
labels=""
curve=""        # the curve's amounts, comma-separated; empty: no curve; "default": the mode's
results=""
force=false
pretrain=false
pt_updates=""   # --pretrain-updates; empty: conf/pretrain.toml's
cores=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc 2>/dev/null || echo 1)  # the usable cores (nproc alone would follow OMP_NUM_THREADS)
jobs=$(( cores >= 2 ? 2 : 1 ))

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "run.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2 ;;
    --stop-stage|--stop_stage) stop_stage=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --quick) quick=true; shift ;;
    --task) task=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    --pretrain) pretrain=true; shift ;;
    --pretrain-updates) pt_updates=$2; pretrain=true; shift 2 ;;
    --labels) labels=$2; shift 2 ;;
    --curve) if [ $# -gt 1 ] && [ "${2#-}" = "$2" ]; then curve=$2; shift 2; else curve=default; shift; fi ;;
    --results) results=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --force) force=true; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
[[ $task =~ ^(commands|open)$ ]] || die "--task is commands or open, not '$task'"
[[ $seeds =~ ^[1-9][0-9]*$ ]] || die "--seeds takes a count of at least 1, not '$seeds'"
[[ $jobs =~ ^[12]$ ]] || die "--jobs is 1 or 2 (the two rows of a seed), not '$jobs'"
[ -z "$pt_updates" ] || [[ $pt_updates =~ ^[1-9][0-9]*$ ]] || die "--pretrain-updates takes a count, not '$pt_updates'"

source "$recipe/../stages.sh"  # log, run_stage, finish_stage, resume_flag

# --- sizes -----------------------------------------------------------------------------------
shipped=""                   # the shipped pretrained checkpoint's folder, when stage 3 starts from it
if $quick; then
  mode=quick-$task
  pretrain=true              # the quick configs' tiny model: no checkpoint shipped for it
  conf=$recipe/conf/quick
  out=${out:-$recipe/exp-quick}
  results=${results:-$out/results.md}
  train_hours=0.1            # 6 minutes of "unlabeled" speech
  dev_minutes=1
  test_minutes=1
  train_speakers=8
  heldout_speakers=2
  ladder="1m 2m 4m"          # the labelled subsets stage 1 draws; the curve's default
  labels=${labels:-2m}
  beam=4
  tune=false                 # fixed LM weights below
else
  mode=default-$task
  conf=$recipe/conf
  suffix=""
  train_hours=2              # commands: ~45 passes over it in the 20 000 pretraining updates
  if [ "$task" = open ]; then
    suffix=-open
    pretrain=true            # no checkpoint shipped for the open task
    train_hours=4            # ~6 passes over it in 2500 pretraining updates
    pt_updates=${pt_updates:-2500}
  elif $pretrain; then
    suffix=-pretrain
    mode=default-$task-pretrain${pt_updates:+-$pt_updates}  # another --pretrain-updates: another --out
  else
    shipped=$recipe/pretrained/$task
    mode=default-$task-shipped  # an exp folder of a run that pretrained (or of w2v before 2026-12-03) is refused
  fi
  out=${out:-$recipe/exp$suffix}
  results=${results:-$repo/docs/demo-results$suffix.md}
  dev_minutes=10
  test_minutes=10
  train_speakers=32
  heldout_speakers=4
  ladder="1m 10m 1h"
  labels=${labels:-10m}
  beam=50
  tune=true
fi
alpha=0.5                    # LM weight and word bonus when not tuned
beta=1.0
tune_alpha="0.5,1,1.5,2"     # the grid searched on dev (default run)
tune_beta="0,1,2,3,4"        # beta 2, the top of 0,1,2, was the baseline's choice in 2 of 3 seeds (2026-12-04)
tune_beam=16                 # a narrower beam for the search keeps stage 6 short
data_seed=0                  # corpus, subsets and LM: the same for every seed

[ "$curve" = default ] && curve=${ladder// /,}
# minutes AMOUNT: 10m -> 10, 1h -> 60, 0.5h -> 30
minutes() {
  [[ $1 =~ ^([0-9]+(\.[0-9]+)?)([mh])$ ]] || die "a labelled amount is minutes or hours (10m, 1h), not '$1'"
  awk -v x="${BASH_REMATCH[1]}" -v u="${BASH_REMATCH[3]}" 'BEGIN { print (u == "h" ? 60 * x : x) }'
}
# by_minutes AMOUNT...: the amounts, smallest first, one per duration
by_minutes() { for a in "$@"; do echo "$(minutes "$a") $a"; done | sort -s -g -u -k1,1 | cut -d' ' -f2; }
for a in $labels ${curve//,/ }; do minutes "$a" > /dev/null; done
amounts=$(by_minutes $labels ${curve//,/ })   # what stages 3, 4 and 6 run on
seed_list=$(seq 0 $((seeds - 1)))

# --- environment -----------------------------------------------------------------------------
[ -x "$repo/.venv/bin/w2v" ] && export PATH="$repo/.venv/bin:$PATH"
[ -d "$repo/tools/kenlm/bin" ] && export PATH="$PATH:$repo/tools/kenlm/bin"
command -v w2v >/dev/null || die "w2v not found; run 'make setup' first"
python=$(command -v python)

mkdir -p "$out/.done" "$out/log"
out=$(cd "$out" && pwd)
if [ -f "$out/.mode" ] && [ "$(cat "$out/.mode")" != "$mode" ]; then
  die "$out holds a '$(cat "$out/.mode")' run; this is a '$mode' run: use another --out"
fi
[ -d "$out/pt" ] && die "$out holds a run of the layout before seeds (pt/ at the top): use another --out"
echo "$mode" > "$out/.mode"
printf '%s\t%s\t%s\t%s\n' "$(date '+%Y-%m-%d %H:%M:%S')" "$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')" \
  "$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')" "$cmd" >> "$out/invocations.tsv"
data=$out/data

# draw_subsets AMOUNT...: data/train-AMOUNT.jsonl for each amount not drawn yet, largest first,
# each from the smallest larger subset already drawn (else train-clean), so the subsets nest
draw_subsets() {
  local a m f n src best
  for a in $(by_minutes "$@" | tac); do
    [ -f "$data/train-$a.jsonl" ] && continue
    m=$(minutes "$a") src=train-clean best=1e18
    for f in "$data"/train-*.jsonl; do
      n=${f##*/train-}; n=${n%.jsonl}
      [[ $n =~ ^[0-9.]+[mh]$ ]] || continue
      if awk -v s="$(minutes "$n")" -v m="$m" -v b="$best" 'BEGIN { exit !(s > m && s < b) }'; then
        best=$(minutes "$n") src=train-$n
      fi
    done
    w2v prepare subset "$data/$src.jsonl" --minutes "$m" --seed "$data_seed" --out "$data/train-$a.jsonl"
  done
}

# finetune ROW SEED AMOUNT: fine-tune ROW (pretrained: from seed-SEED/pt; scratch: random init);
# the subset must be drawn already (two rows side by side must not draw it twice)
finetune() {
  local sd=$out/seed-$2 init=none cfg=$conf/finetune-scratch.toml
  if [ "$1" = pretrained ]; then
    cfg=$conf/finetune.toml init=$sd/pt/last.pt
    [ -n "$shipped" ] && init=$shipped/model.pt
  fi
  w2v finetune --config "$cfg" --init "$init" --train "$data/train-$3.jsonl" --valid "$data/dev-clean.jsonl" \
    --seed "$2" --out "$sd/ft-$1-$3" $(resume_flag "$sd/ft-$1-$3") ${threads:+--threads $threads}
}

# decode SEED AMOUNT: both rows on the test set, greedy and with the 4-gram
decode() {
  local row dir ckpt a b
  for row in pretrained scratch; do
    dir=$out/seed-$1/decode/$row-$2
    mkdir -p "$dir"
    # the model at the end of the fine-tuning schedule: while dev WER is near 1, "best by dev
    # WER" picks the emptiest early checkpoint rather than the better one
    ckpt=$out/seed-$1/ft-$row-$2/last.pt
    w2v transcribe "$ckpt" --manifest "$data/test-clean.jsonl" --out "$dir/greedy.hyp.jsonl"
    a=$alpha b=$beta
    if $tune; then  # LM weight and word bonus from the dev set, never from test
      w2v transcribe "$ckpt" --manifest "$data/dev-clean.jsonl" --lm "$out/lm/4gram.bin" \
        --beam "$tune_beam" --tune --tune-alpha "$tune_alpha" --tune-beta "$tune_beta" --out "$dir/tune.jsonl"
      read -r a b < <("$python" -c 'import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
best = min((r for r in rows if isinstance(r.get("alpha"), (int, float))), key=lambda r: (r["wer"], r["cer"]))
print(best["alpha"], best["beta"])' "$dir/tune.jsonl")
    fi
    echo "$a $b" > "$dir/lm-weights.txt"
    log "seed $1, $2, $row: --alpha $a --beta $b"
    w2v transcribe "$ckpt" --manifest "$data/test-clean.jsonl" --lm "$out/lm/4gram.bin" \
      --beam "$beam" --alpha "$a" --beta "$b" --out "$dir/lm.hyp.jsonl"
  done
}

log "w2v demo ($mode, seeds: $(echo $seed_list), labelled amounts: $(echo $amounts)) -> $out"

# the sentence pool `prepare synth` draws from, and (without the dev and test sentences) the LM text
if [ "$task" = commands ]; then
  sentences=$out/domain/sentences.txt
else  # w2v's shipped list: public-domain text from ../shared/data/text (scripts/make_sentence_list.py)
  sentences=$("$python" -c 'from w2vcli.data.synth import DEFAULT_SENTENCES; print(DEFAULT_SENTENCES)')
fi

if run_stage 1 prepare; then
  {
    if [ "$task" = commands ]; then
      mkdir -p "$out/domain"
      "$python" "$recipe/local/domain.py" --out "$sentences" --seed "$data_seed"
    fi
    w2v prepare synth --out "$out/corpus" --hours "$train_hours" --dev-minutes "$dev_minutes" \
      --test-minutes "$test_minutes" --speakers "$train_speakers" \
      --heldout-speakers "$heldout_speakers" --seed "$data_seed" --sentences "$sentences"
    w2v prepare librispeech "$out/corpus" --out "$data"
    draw_subsets $ladder $amounts
  } 2>&1 | tee "$out/log/stage-1.log"
  finish_stage 1 prepare
fi

if [ -n "$shipped" ] && run_stage 2 "pretrained checkpoint"; then
  # the file git carries (a checkout without it, e.g. a Git LFS pointer, fails here, not in stage 3)
  (cd "$shipped" && sha256sum --check --quiet SHA256SUMS) \
    || die "$shipped/model.pt is missing or damaged (sha256sum --check SHA256SUMS failed); run with --pretrain to make one"
  log "every seed fine-tunes the shipped $(realpath --relative-to="$repo" "$shipped/model.pt") ($(sed -n 's/^made: //p' "$shipped/README.md"));" \
    "--pretrain pretrains instead"
  finish_stage 2 "pretrained checkpoint"
fi

for s in $seed_list; do
  $pretrain || break
  if run_stage 2 pretrain "seed-$s"; then
    mkdir -p "$out/seed-$s/log"
    # the transcripts in train-clean.jsonl are not read by pretraining
    w2v pretrain --config "$conf/pretrain.toml" --train "$data/train-clean.jsonl" \
      --valid "$data/dev-clean.jsonl" --seed "$s" ${pt_updates:+--max-updates $pt_updates} \
      --out "$out/seed-$s/pt" $(resume_flag "$out/seed-$s/pt") \
      2>&1 | tee "$out/seed-$s/log/stage-2.log"
    finish_stage 2 pretrain "seed-$s"
  fi
done

# stage 3 fine-tunes the pretrained row, stage 4 the baseline: for every seed and amount, side by
# side with --jobs 2 (each on half the cores), else one after the other
threads=""
[ "$jobs" -gt 1 ] && threads=$(( cores / jobs > 1 ? cores / jobs : 1 ))
# finetune_stage N NAME ROW SEED AMOUNT: one row's stage, with its .done marker and log
finetune_stage() {
  run_stage "$1" "$2" "seed-$4" "$1-$5" || return 0
  mkdir -p "$out/seed-$4/log"
  if [ "$jobs" -gt 1 ]; then
    finetune "$3" "$4" "$5" 2>&1 | tee "$out/seed-$4/log/stage-$1-$5.log" | sed -u "s/^/[$3] /"
  else
    finetune "$3" "$4" "$5" 2>&1 | tee "$out/seed-$4/log/stage-$1-$5.log"
  fi
  finish_stage "$1" "$2" "seed-$4" "$1-$5"
}
for s in $seed_list; do
  for a in $amounts; do
    if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 3 ]; then draw_subsets "$a"; fi
    if [ "$jobs" -gt 1 ]; then
      finetune_stage 3 finetune pretrained "$s" "$a" & p3=$!
      finetune_stage 4 scratch scratch "$s" "$a" & p4=$!
      failed=""
      wait "$p3" || failed="3 (finetune)"
      wait "$p4" || failed="${failed:+$failed and }4 (scratch)"
      [ -z "$failed" ] || die "stage $failed failed for seed $s, $a: see $out/seed-$s/log/"
    else
      finetune_stage 3 finetune pretrained "$s" "$a"
      finetune_stage 4 scratch scratch "$s" "$a"
    fi
  done
done

if run_stage 5 lm; then
  # the pool `prepare synth` drew every sentence from: keep the dev and test sentences out of the LM
  w2v lm build "$sentences" --order 4 --rules "$data/text_rules.json" --exclude "$data/dev-clean.jsonl" \
    --exclude "$data/test-clean.jsonl" --out "$out/lm/4gram.bin" 2>&1 | tee "$out/log/stage-5.log"
  finish_stage 5 lm
fi

for s in $seed_list; do
  for a in $amounts; do
    if run_stage 6 decode "seed-$s" "6-$a"; then
      mkdir -p "$out/seed-$s/log"
      decode "$s" "$a" 2>&1 | tee "$out/seed-$s/log/stage-6-$a.log"
      finish_stage 6 decode "seed-$s" "6-$a"
    fi
  done
done

rm -f "$out/.done/7"  # the page depends on --seeds, --labels and --curve: always rewritten
if run_stage 7 score; then
  : > "$out/log/stage-7.log"
  for s in $seed_list; do
    for a in $amounts; do
      for row in pretrained scratch; do
        for dec in greedy lm; do
          dir=$out/seed-$s/decode/$row-$a
          [ "$dir/$dec.score.json" -nt "$dir/$dec.hyp.jsonl" ] && ! $force && continue
          w2v score --ref "$data/test-clean.jsonl" --hyp "$dir/$dec.hyp.jsonl" --json \
            --details "$dir/details-$dec" > "$dir/$dec.score.json" 2>> "$out/log/stage-7.log"
        done
      done
    done
  done
  png=${results%.md}.png
  "$python" "$recipe/local/plot.py" --exp "$out" --out "$png" --seeds "$seeds" --labels "$labels" \
    --curve "${curve:+$(echo $amounts)}" ${shipped:+--pretrained "$shipped"} 2>&1 | tee -a "$out/log/stage-7.log"
  finish_stage 7 score   # before the table, so its own wall time is in it
  "$python" "$recipe/local/results.py" --exp "$out" --out "$results" --plot "$png" --mode "${mode%%-*}" --task "$task" \
    --seeds "$seeds" --labels "$labels" --curve "${curve:+$(echo $amounts)}" ${shipped:+--pretrained "$shipped"} \
    2>&1 | tee -a "$out/log/stage-7.log"
fi

log "done; results: $results"
