#!/usr/bin/env bash
# wav2vec 2.0 on LibriSpeech, as in the paper (Baevski et al. 2020, arXiv 2006.11477):
# pretrain on the 960 h of audio, fine-tune on 10 min / 1 h / 10 h (Libri-Light) / 100 h / 960 h
# of labels, decode dev/test clean/other with a 4-gram LM, and put the WERs beside the paper's.
#
#   recipes/librispeech/run.sh --librispeech /data/LibriSpeech \
#       --librilight /data/librispeech_finetuning --lm-corpus /data/librispeech-lm-norm.txt.gz
#   recipes/librispeech/run.sh ... --model large                 # LARGE instead of BASE
#   recipes/librispeech/run.sh ... --pretrained wav2vec_small.pt --stage 4   # published weights
#
# Stages (one `w2v` call each, or one per split / subset; OUT/.done/N marks a finished stage):
#   1 prepare     w2v prepare librispeech: every subset found (train-clean-100, train-clean-360,
#                 train-other-500, dev-clean, dev-other, test-clean, test-other) -> data/*.jsonl,
#                 data/vocab.json; train-960 = the three training subsets; eval = dev + test
#   2 librilight  w2v prepare librispeech on each part of Libri-Light's limited-resource set
#                 (librispeech_finetuning/1h/{0..5}/{clean,other}, 9h/{clean,other}):
#                 train-10m = 1h/0, train-1h = 1h/*, train-10h = 1h/* + 9h; train-100h = train-clean-100
#   3 pretrain    w2v pretrain --gpus 8 on train-960 (conf/pretrain-{base,large}.toml)
#   4 finetune    w2v finetune per split (conf/finetune-{base,large}-{10m,1h,10h,100h,960h}.toml),
#                 validated on dev-other; best.pt by dev-other WER
#   5 lm          w2v lm build: 4-gram on the LibriSpeech LM corpus (librispeech-lm-norm.txt),
#                 dev/test sentences excluded
#   6 decode      w2v transcribe dev/test clean/other per split: greedy, then 4-gram beam search
#                 with LM weight / word bonus tuned on dev-other (random trials, as the paper tuned
#                 on dev-other with 128 Bayesian-optimisation trials)
#   7 score       w2v score per set; local/results.py writes OUT/results.md with the paper's
#                 numbers (Appendix C, Tables 9-10, 4-gram and no-LM rows) beside ours
#
# Expected wall time on 8 GPUs. ESTIMATES, not measurements: w2v has not been run at this scale.
# They scale the paper's reported compute (BASE: 64 V100 x 1.6 days = 2,458 V100-hours for 400k
# updates; LARGE LS-960: 128 V100 x 2.3 days = 7,066 V100-hours) by an assumed 3x throughput of an
# H100 (bf16) over a V100 (fp16); fine-tuning from the audio it processes at pretraining's rate
# (an upper bound: the frozen feature encoder and the first 10k head-only updates are cheaper).
#   stage         BASE                         LARGE
#   1 prepare     ~10 min (281k headers, disk-bound)
#   2 librilight  ~1 min
#   3 pretrain    ~4 days                      ~12 days (LS-960, 250k updates)
#   4 finetune    10m 1 h, 1h 1 h, 10h 1.5 h,  about 4x BASE per split
#                 100h 3.5 h, 960h 1 day
#   5 lm          ~30 min, CPU (lmplz over ~800 M words; 8 s for 4.4 M words measured on 2 cores)
#   6 decode      hours, CPU-bound (pyctcdecode beam 500: 64 tuning trials over dev-other plus
#                 four sets per split); the acoustic model takes minutes on one GPU
#   7 score       ~1 min
#
# Layout of OUT (default recipes/librispeech/exp, git-ignored):
#   data/{train-clean-100,...,test-other}.jsonl, train-960.jsonl, eval.jsonl, vocab.json
#   data/librilight/<part>/*.jsonl, data/train-{10m,1h,10h,100h}.jsonl
#   pt-MODEL/                   pretraining run (best.pt: lowest validation loss, as the paper)
#   ft-MODEL-SPLIT/             fine-tuning runs
#   lm/4gram.bin                KenLM binary + 4gram.bin.unigrams.txt
#   decode/MODEL-SPLIT/{greedy,lm}.hyp.jsonl (all four sets), tune.jsonl, {greedy,lm}-SET.score.json
#   results.md, timings.tsv, log/stage-N.log
#
# Options:
#   --librispeech DIR   LibriSpeech root (stage 1)      --librilight DIR   librispeech_finetuning (stage 2)
#   --lm-corpus FILE    librispeech-lm-norm.txt[.gz] (stage 5), or --lm FILE: an existing KenLM model
#   --model base|large  (default base)                  --splits "10m 1h 10h 100h 960h"
#   --gpus N            (default 8; 0 = CPU)            --pretrained PATH  fine-tune from this instead of stage 3
#   --beam N (500)      --tune-trials N (64)            --lm-memory SIZE (80%)
#   --stage N --stop-stage N --out DIR --force (redo done stages; training resumes from last.pt if there)
#   --pretrain-args/--finetune-args/--transcribe-args "..."   extra options passed to w2v (last wins)
set -euo pipefail

recipe=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$recipe/../.." && pwd)

stage=1
stop_stage=7
out=$recipe/exp
librispeech=""
librilight=""
lm_corpus=""
lm=""
model=base
splits="10m 1h 10h 100h 960h"
gpus=8
pretrained=""
beam=500
tune_trials=64
lm_memory=80%
pretrain_args=""
finetune_args=""
transcribe_args=""
force=false

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2 ;;
    --stop-stage|--stop_stage) stop_stage=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --librispeech) librispeech=$2; shift 2 ;;
    --librilight) librilight=$2; shift 2 ;;
    --lm-corpus) lm_corpus=$2; shift 2 ;;
    --lm) lm=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --splits) splits=$2; shift 2 ;;
    --gpus) gpus=$2; shift 2 ;;
    --pretrained) pretrained=$2; shift 2 ;;
    --beam) beam=$2; shift 2 ;;
    --tune-trials) tune_trials=$2; shift 2 ;;
    --lm-memory) lm_memory=$2; shift 2 ;;
    --pretrain-args) pretrain_args=$2; shift 2 ;;
    --finetune-args) finetune_args=$2; shift 2 ;;
    --transcribe-args) transcribe_args=$2; shift 2 ;;
    --force) force=true; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 1 ;;
  esac
done

source "$recipe/../stages.sh"  # log, run_stage, finish_stage, resume_flag
die() { echo "run.sh: $*" >&2; exit 1; }

case "$model" in base|large) ;; *) die "--model must be base or large, got $model" ;; esac
[ -x "$repo/.venv/bin/w2v" ] && export PATH="$repo/.venv/bin:$PATH"
[ -d "$repo/tools/kenlm/bin" ] && export PATH="$PATH:$repo/tools/kenlm/bin"
command -v w2v >/dev/null || die "w2v not found; run 'make setup' first"
python=$(command -v python)

mkdir -p "$out/.done" "$out/log"
out=$(cd "$out" && pwd)
data=$out/data
sets="dev-clean dev-other test-clean test-other"
lm_model=${lm:-$out/lm/4gram.bin}

# concat OUT IN...: one manifest from several (ids are unique across LibriSpeech)
concat() { local dst=$1; shift; cat "$@" > "$dst.tmp" && mv "$dst.tmp" "$dst"; }

if run_stage 1 prepare; then
  [ -n "$librispeech" ] || die "stage 1 needs --librispeech DIR (the LibriSpeech root)"
  w2v prepare librispeech "$librispeech" --out "$data" 2>&1 | tee "$out/log/stage-1.log"
  train=()
  for s in train-clean-100 train-clean-360 train-other-500; do
    [ -f "$data/$s.jsonl" ] && train+=("$data/$s.jsonl") || log "warning: no $s in $librispeech"
  done
  [ ${#train[@]} -gt 0 ] || die "no training subset found in $librispeech"
  concat "$data/train-960.jsonl" "${train[@]}"
  [ -f "$data/train-clean-100.jsonl" ] && cp "$data/train-clean-100.jsonl" "$data/train-100h.jsonl"
  for s in $sets; do [ -f "$data/$s.jsonl" ] || die "no $s in $librispeech: dev and test sets are needed"; done
  concat "$data/eval.jsonl" $(for s in $sets; do echo "$data/$s.jsonl"; done)
  finish_stage 1 prepare
fi

if run_stage 2 librilight; then
  [ -n "$librilight" ] || die "stage 2 needs --librilight DIR (librispeech_finetuning)"
  : > "$out/log/stage-2.log"
  ten_min=() one_h=() nine_h=()
  for part in "$librilight"/1h/*/* "$librilight"/9h/*; do
    [ -d "$part" ] || continue
    rel=${part#"$librilight"/}                       # 1h/0/clean
    name=${rel//\//-}                                # 1h-0-clean
    w2v prepare librispeech "$part" --out "$data/librilight/$name" 2>&1 | tee -a "$out/log/stage-2.log"
    manifest=$data/librilight/$name/$(basename "$part").jsonl
    case "$rel" in
      1h/0/*) ten_min+=("$manifest"); one_h+=("$manifest") ;;
      1h/*) one_h+=("$manifest") ;;
      9h/*) nine_h+=("$manifest") ;;
    esac
  done
  [ ${#ten_min[@]} -gt 0 ] || die "$librilight: no 1h/0/{clean,other}: not Libri-Light's librispeech_finetuning?"
  concat "$data/train-10m.jsonl" "${ten_min[@]}"
  concat "$data/train-1h.jsonl" "${one_h[@]}"
  concat "$data/train-10h.jsonl" "${one_h[@]}" "${nine_h[@]}"
  finish_stage 2 librilight
fi

pt=$out/pt-$model
init=${pretrained:-$pt/best.pt}

if run_stage 3 pretrain; then
  [ -z "$pretrained" ] || die "--pretrained given: skip stage 3 (--stage 4)"
  w2v pretrain --config "$recipe/conf/pretrain-$model.toml" --train "$data/train-960.jsonl" \
    --valid "$data/dev-other.jsonl" --gpus "$gpus" --out "$pt" $(resume_flag "$pt") $pretrain_args \
    2>&1 | tee "$out/log/stage-3.log"
  finish_stage 3 pretrain
fi

if run_stage 4 finetune; then
  : > "$out/log/stage-4.log"
  for split in $splits; do
    ft=$out/ft-$model-$split
    log "fine-tuning $model on $split from $init"
    w2v finetune --config "$recipe/conf/finetune-$model-$split.toml" --init "$init" \
      --train "$data/train-$split.jsonl" --valid "$data/dev-other.jsonl" \
      --gpus "$gpus" --out "$ft" $(resume_flag "$ft") $finetune_args 2>&1 | tee -a "$out/log/stage-4.log"
  done
  finish_stage 4 finetune
fi

if run_stage 5 lm; then
  if [ -n "$lm" ]; then
    log "using the given LM $lm"
  else
    [ -n "$lm_corpus" ] || die "stage 5 needs --lm-corpus librispeech-lm-norm.txt[.gz] (or --lm MODEL)"
    w2v lm build "$lm_corpus" --order 4 --memory "$lm_memory" --rules "$data/text_rules.json" \
      $(for s in $sets; do echo --exclude "$data/$s.jsonl"; done) --out "$lm_model" \
      2>&1 | tee "$out/log/stage-5.log"
  fi
  finish_stage 5 lm
fi

if run_stage 6 decode; then
  : > "$out/log/stage-6.log"
  for split in $splits; do
    dir=$out/decode/$model-$split
    ckpt=$out/ft-$model-$split/best.pt
    mkdir -p "$dir"
    w2v transcribe "$ckpt" --manifest "$data/eval.jsonl" --out "$dir/greedy.hyp.jsonl" $transcribe_args \
      2>&1 | tee -a "$out/log/stage-6.log"
    # LM weight in [0, 5] and word bonus in [-5, 5] on dev-other, the paper's ranges (§4.4)
    w2v transcribe "$ckpt" --manifest "$data/dev-other.jsonl" --lm "$lm_model" --beam "$beam" --tune \
      --tune-alpha 0,5 --tune-beta=-5,5 --tune-trials "$tune_trials" --out "$dir/tune.jsonl" \
      $transcribe_args 2>&1 | tee -a "$out/log/stage-6.log"
    read -r a b < <("$python" -c 'import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
best = min((r for r in rows if isinstance(r.get("alpha"), (int, float))), key=lambda r: (r["wer"], r["cer"]))
print(best["alpha"], best["beta"])' "$dir/tune.jsonl")
    echo "$a $b" > "$dir/lm-weights.txt"
    log "$model-$split: --alpha $a --beta $b"
    w2v transcribe "$ckpt" --manifest "$data/eval.jsonl" --lm "$lm_model" --beam "$beam" \
      --alpha "$a" --beta "$b" --out "$dir/lm.hyp.jsonl" $transcribe_args 2>&1 | tee -a "$out/log/stage-6.log"
  done
  finish_stage 6 decode
fi

if run_stage 7 score; then
  : > "$out/log/stage-7.log"
  for split in $splits; do
    dir=$out/decode/$model-$split
    for dec in greedy lm; do
      for s in $sets; do
        # hypotheses of the other three sets are ignored (one warning line)
        w2v score --ref "$data/$s.jsonl" --hyp "$dir/$dec.hyp.jsonl" --json \
          > "$dir/$dec-$s.score.json" 2>> "$out/log/stage-7.log"
      done
    done
  done
  finish_stage 7 score
  "$python" "$recipe/local/results.py" --exp "$out" --model "$model" --splits "$splits" \
    --out "$out/results.md" 2>&1 | tee -a "$out/log/stage-7.log"
fi

log "done"
