#!/usr/bin/env bash
# The offline wav2vec 2.0 demo: does self-supervised pretraining make 10 minutes of labels go
# further than training from scratch? Everything runs on two CPU cores, with no download:
# the speech is synthesized (`w2v prepare synth`), the LM text ships with w2v.
#
#   recipes/demo/run.sh                 # the demo (target: under 45 minutes on 2 CPU cores)
#   recipes/demo/run.sh --quick         # every stage on tiny sizes, a smoke test (< 5 minutes)
#   recipes/demo/run.sh --stage 6 --stop-stage 7 --force   # redo decoding and scoring only
#
# Stages (each one or a few `w2v` calls; a finished stage leaves OUT/.done/N and is skipped on a
# re-run; remove that file, or use --force, to redo it):
#   1  prepare    w2v prepare synth: train-clean (hours of speech, 32 speakers), dev-clean and
#                 test-clean (10 min each, 4 unseen speakers each, unseen sentences);
#                 w2v prepare librispeech on it; w2v prepare subset: 10-minute and 1-hour
#                 labeled subsets of train-clean (whole utterances, spread over speakers).
#   2  pretrain   w2v pretrain on all of train-clean, ignoring its transcripts (conf/pretrain.toml)
#   3  finetune   w2v finetune from the pretrained model on the 10-minute subset (conf/finetune.toml)
#   4  scratch    the same fine-tuning from a random init: same labels, same updates, same code
#                 (conf/finetune-scratch.toml)
#   5  lm         w2v lm build: a 4-gram on w2v's shipped public-domain sentence list, with the
#                 dev and test sentences removed (--exclude)
#   6  decode     w2v transcribe the test set with both models: greedy, and with the 4-gram
#                 (LM weight and word bonus tuned on dev with `--tune`; fixed under --quick)
#   7  score      w2v score; prints the results table and writes it (default run:
#                 docs/demo-results.md, with the learning curves in docs/demo-results.png)
#
# Layout of OUT (default recipes/demo/exp, --quick: recipes/demo/exp-quick; both git-ignored):
#   corpus/{train-clean,dev-clean,test-clean}/SPK/CHAP/SPK-CHAP-UTT.flac   synthesized speech
#   data/{train-clean,dev-clean,test-clean}.jsonl, data/train-{10m,1h}.jsonl, data/vocab.json
#   pt/                 pretraining: last.pt, best.pt, metrics.jsonl, config.toml
#   ft-pretrained/      fine-tuned from pt/last.pt: last.pt (decoded), best.pt (by dev WER), metrics.jsonl
#   ft-scratch/         fine-tuned from random init
#   lm/4gram.bin        KenLM binary (+ 4gram.bin.unigrams.txt)
#   decode/{pretrained,scratch}/{greedy,lm}.hyp.jsonl, *.score.json, tune.jsonl, details-*/
#   timings.tsv         wall seconds per stage;  results.md, curves.png
#   log/stage-N.log     full output of each stage
#
# Options: --stage N --stop-stage N --out DIR --quick --labels 10m|1h --results FILE --force
#   --force      run the stages in range even when done (a training stage whose folder holds a
#                last.pt resumes from it: delete the folder, e.g. OUT/pt, to train again)
#   --labels     which labeled subset stages 3-4 fine-tune on (default 10m)
#   --results    where stage 7 writes the table (default: docs/demo-results.md for the full
#                demo, OUT/results.md under --quick, so a smoke test never touches docs/)
#
# Needs: `make setup` (or scripts/setup.sh): the .venv with w2v, the Debian voices, and
# KenLM's lmplz/build_binary in tools/kenlm/bin. Uses matplotlib for the plot if installed.
set -euo pipefail

recipe=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$recipe/../.." && pwd)

stage=1
stop_stage=7
quick=false
out=""
labels=""
results=""
force=false

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2 ;;
    --stop-stage|--stop_stage) stop_stage=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --quick) quick=true; shift ;;
    --labels) labels=$2; shift 2 ;;
    --results) results=$2; shift 2 ;;
    --force) force=true; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 1 ;;
  esac
done

source "$recipe/../stages.sh"  # log, run_stage, finish_stage, resume_flag

# --- sizes -----------------------------------------------------------------------------------
if $quick; then
  mode=quick
  conf=$recipe/conf/quick
  out=${out:-$recipe/exp-quick}
  results=${results:-$out/results.md}
  train_hours=0.1            # 6 minutes of "unlabeled" speech
  dev_minutes=1
  test_minutes=1
  train_speakers=8
  heldout_speakers=2
  label_sets="2m:2 4m:4"     # name:minutes; the first is fine-tuned on
  beam=4
  tune=false                 # fixed LM weights below
else
  mode=default
  conf=$recipe/conf
  out=${out:-$recipe/exp}
  results=${results:-$repo/docs/demo-results.md}
  train_hours=4              # ~6 passes over it in the 2500 pretraining updates
  dev_minutes=10
  test_minutes=10
  train_speakers=32
  heldout_speakers=4
  label_sets="10m:10 1h:60"
  beam=50
  tune=true
fi
alpha=0.5                    # LM weight and word bonus when not tuned
beta=1.0
tune_alpha="0.5,1,1.5,2"     # the grid searched on dev (default run)
tune_beta="0,1,2"
tune_beam=16                 # a narrower beam for the search keeps stage 6 short
labels=${labels:-${label_sets%%:*}}
seed=0

# --- environment -----------------------------------------------------------------------------
[ -x "$repo/.venv/bin/w2v" ] && export PATH="$repo/.venv/bin:$PATH"
[ -d "$repo/tools/kenlm/bin" ] && export PATH="$PATH:$repo/tools/kenlm/bin"
command -v w2v >/dev/null || { echo "run.sh: w2v not found; run 'make setup' first" >&2; exit 1; }
python=$(command -v python)

mkdir -p "$out/.done" "$out/log"
out=$(cd "$out" && pwd)
if [ -f "$out/.mode" ] && [ "$(cat "$out/.mode")" != "$mode" ]; then
  echo "run.sh: $out holds a '$(cat "$out/.mode")' run; this is a '$mode' run: use another --out" >&2
  exit 1
fi
echo "$mode" > "$out/.mode"
data=$out/data

log "w2v demo ($mode) -> $out"

if run_stage 1 prepare; then
  w2v prepare synth --out "$out/corpus" --hours "$train_hours" --dev-minutes "$dev_minutes" \
    --test-minutes "$test_minutes" --speakers "$train_speakers" \
    --heldout-speakers "$heldout_speakers" --seed "$seed" 2>&1 | tee "$out/log/stage-1.log"
  w2v prepare librispeech "$out/corpus" --out "$data" 2>&1 | tee -a "$out/log/stage-1.log"
  for set in $label_sets; do
    w2v prepare subset "$data/train-clean.jsonl" --minutes "${set#*:}" --seed "$seed" \
      --out "$data/train-${set%%:*}.jsonl" 2>&1 | tee -a "$out/log/stage-1.log"
  done
  finish_stage 1 prepare
fi

if run_stage 2 pretrain; then
  # the transcripts in train-clean.jsonl are not read by pretraining
  w2v pretrain --config "$conf/pretrain.toml" --train "$data/train-clean.jsonl" \
    --valid "$data/dev-clean.jsonl" --seed "$seed" --out "$out/pt" $(resume_flag "$out/pt") \
    2>&1 | tee "$out/log/stage-2.log"
  finish_stage 2 pretrain
fi

if run_stage 3 finetune; then
  w2v finetune --config "$conf/finetune.toml" --init "$out/pt/last.pt" \
    --train "$data/train-$labels.jsonl" --valid "$data/dev-clean.jsonl" \
    --seed "$seed" --out "$out/ft-pretrained" $(resume_flag "$out/ft-pretrained") \
    2>&1 | tee "$out/log/stage-3.log"
  finish_stage 3 finetune
fi

if run_stage 4 scratch; then
  w2v finetune --config "$conf/finetune-scratch.toml" --init none \
    --train "$data/train-$labels.jsonl" --valid "$data/dev-clean.jsonl" \
    --seed "$seed" --out "$out/ft-scratch" $(resume_flag "$out/ft-scratch") \
    2>&1 | tee "$out/log/stage-4.log"
  finish_stage 4 scratch
fi

if run_stage 5 lm; then
  # w2v's shipped sentence list (public-domain text from ../shared/data/text, made by
  # scripts/make_sentence_list.py) is also the pool `prepare synth` drew every sentence from:
  # keep the dev and test sentences out of the LM.
  sentences=$("$python" -c 'from w2vcli.data.synth import DEFAULT_SENTENCES; print(DEFAULT_SENTENCES)')
  w2v lm build "$sentences" --order 4 --rules "$data/text_rules.json" --exclude "$data/dev-clean.jsonl" \
    --exclude "$data/test-clean.jsonl" --out "$out/lm/4gram.bin" 2>&1 | tee "$out/log/stage-5.log"
  finish_stage 5 lm
fi

if run_stage 6 decode; then
  : > "$out/log/stage-6.log"
  for model in pretrained scratch; do
    dir=$out/decode/$model
    mkdir -p "$dir"
    # the model at the end of the fine-tuning schedule: while dev WER is near 1, "best by dev
    # WER" picks the emptiest early checkpoint rather than the better one
    ckpt=$out/ft-$model/last.pt
    w2v transcribe "$ckpt" --manifest "$data/test-clean.jsonl" --out "$dir/greedy.hyp.jsonl" \
      2>&1 | tee -a "$out/log/stage-6.log"
    a=$alpha b=$beta
    if $tune; then  # LM weight and word bonus from the dev set, never from test
      w2v transcribe "$ckpt" --manifest "$data/dev-clean.jsonl" --lm "$out/lm/4gram.bin" \
        --beam "$tune_beam" --tune --tune-alpha "$tune_alpha" --tune-beta "$tune_beta" \
        --out "$dir/tune.jsonl" 2>&1 | tee -a "$out/log/stage-6.log"
      read -r a b < <("$python" -c 'import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
best = min((r for r in rows if isinstance(r.get("alpha"), (int, float))), key=lambda r: (r["wer"], r["cer"]))
print(best["alpha"], best["beta"])' "$dir/tune.jsonl")
    fi
    echo "$a $b" > "$dir/lm-weights.txt"
    log "$model: --alpha $a --beta $b"
    w2v transcribe "$ckpt" --manifest "$data/test-clean.jsonl" --lm "$out/lm/4gram.bin" \
      --beam "$beam" --alpha "$a" --beta "$b" --out "$dir/lm.hyp.jsonl" 2>&1 | tee -a "$out/log/stage-6.log"
  done
  finish_stage 6 decode
fi

if run_stage 7 score; then
  : > "$out/log/stage-7.log"
  for model in pretrained scratch; do
    for dec in greedy lm; do
      dir=$out/decode/$model
      w2v score --ref "$data/test-clean.jsonl" --hyp "$dir/$dec.hyp.jsonl" --json \
        --details "$dir/details-$dec" > "$dir/$dec.score.json" 2>> "$out/log/stage-7.log"
    done
  done
  png=${results%.md}.png
  "$python" "$recipe/local/plot.py" --exp "$out" --out "$png" 2>&1 | tee -a "$out/log/stage-7.log"
  finish_stage 7 score   # before the table, so its own wall time is in it
  "$python" "$recipe/local/results.py" --exp "$out" --out "$results" --plot "$png" --mode "$mode" \
    --labels "$labels" 2>&1 | tee -a "$out/log/stage-7.log"
fi

log "done; results: $results"
