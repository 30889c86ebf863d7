#!/usr/bin/env bash
# Writes tests/fixtures/roberta/ranking/ with fairseq 0.12.3.1 (the peer venv): a made-up four-choice task (which
# verse comes next?) in fairseq's sentence_ranking layout, the tiny RoBERTa of tests/fixtures/roberta/gpt2 fine-tuned
# on it with fairseq's RACE recipe flags (sizes made small, no dropout), and what fairseq-validate prints for it.
#   bash scripts/make_roberta_ranking_fixtures.sh [PEER_VENV]     (from the repository root; ~1 minute on 2 cores)
# Rerun it whenever scripts/make_roberta_fixtures.sh has remade gpt2/model.pt.
set -euo pipefail
VENV=${1:-/work/peer-venvs/fs}
ROOT=$(pwd)
OUT=${FIXTURE_OUT:-$ROOT/tests/fixtures/roberta/ranking}
PRETRAINED=$ROOT/tests/fixtures/roberta/gpt2
DATA=${SEQLOOM_DATA:-/work/shared/data}
WORK=$(mktemp -d)
trap 'echo "failed: see the logs in $WORK" >&2' ERR
export PATH=$VENV/bin:$PATH TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
PY=$VENV/bin/python
rm -rf "$OUT" && mkdir -p "$OUT"
cd "$WORK"

# ---- text: context = three consecutive verses, options = the verse after them and three other verses (shuffled);
# the label is the position of the true next verse (RACE's layout: input0 context, input1..4 options, label/*.label)
head -n 120 "$DATA/bible-en-es/valid.en" > verses.txt
$PY - <<'PY'
import random
lines = open("verses.txt").read().splitlines()
rng = random.Random(1)
for split, span in (("train", range(2, 50)), ("valid", range(60, 76))):
    rows = {f"input{k}": [] for k in range(5)}
    labels = []
    for i in span:
        options = [lines[i + 1]] + rng.sample([lines[k] for k in range(len(lines)) if abs(k - i - 1) > 0], 3)
        order = list(range(4))
        rng.shuffle(order)
        rows["input0"].append(" ".join(lines[i - 2 : i + 1]))
        for slot, k in enumerate(order):
            rows[f"input{slot + 1}"].append(options[k])
        labels.append(str(order.index(0)))
    for name, values in rows.items():
        open(f"{split}.{name}", "w").write("\n".join(values) + "\n")
    open(f"{split}.label", "w").write("\n".join(labels) + "\n")
PY
for split in train valid; do for k in 0 1 2 3 4; do
  $PY -m fairseq.examples.roberta.multiprocessing_bpe_encoder --encoder-json "$DATA/gpt2-bpe/encoder.json" \
    --vocab-bpe "$DATA/gpt2-bpe/vocab.bpe" --inputs $split.input$k --outputs $split.input$k.bpe --keep-empty --workers 1
done; done
for k in 0 1 2 3 4; do  # preprocess_RACE.sh's command
  fairseq-preprocess --only-source --trainpref train.input$k.bpe --validpref valid.input$k.bpe \
    --destdir ranking-bin/input$k --workers 1 --srcdict "$PRETRAINED/dict.txt" > /dev/null 2>&1
done
mkdir -p ranking-bin/label && cp train.label valid.label ranking-bin/label/

# ---- fine-tuning: README.race.md's command (no --fp16 on the CPU), sizes made small, dropout off so that the
# losses are comparable update by update; 48 examples, batch 8, update-freq 2: 3 updates an epoch, 4 epochs
TASK=(--task sentence_ranking --num-classes 4 --init-token 0 --separator-token 2 --max-option-length 16
      --shorten-method truncate)
fairseq-train ranking-bin --cpu --num-workers 0 --seed 1 \
  --restore-file "$PRETRAINED/model.pt" --reset-optimizer --reset-dataloader --reset-meters \
  --best-checkpoint-metric accuracy --maximize-best-checkpoint-metric "${TASK[@]}" --max-positions 128 \
  --arch roberta_base --encoder-layers 2 --encoder-embed-dim 32 --encoder-ffn-embed-dim 64 --encoder-attention-heads 2 \
  --dropout 0.0 --attention-dropout 0.0 --weight-decay 0.01 --criterion sentence_ranking \
  --optimizer adam --adam-betas '(0.9, 0.98)' --adam-eps 1e-06 --clip-norm 0.0 --lr-scheduler fixed --lr 3e-3 \
  --batch-size 8 --required-batch-size-multiple 1 --update-freq 2 --max-update 12 \
  --log-format simple --log-interval 1 \
  --save-dir ck --no-epoch-checkpoints --no-save-optimizer-state --no-last-checkpoints > train.log 2>&1
fairseq-validate ranking-bin --cpu --num-workers 0 --path ck/checkpoint_best.pt "${TASK[@]}" \
  --criterion sentence_ranking --batch-size 4 --required-batch-size-multiple 1 > validate.log 2>&1
# README.race.md's evaluation command (--batch-size 1), writing each example's id, predicted and right option
fairseq-validate ranking-bin --cpu --num-workers 0 --path ck/checkpoint_best.pt "${TASK[@]}" \
  --criterion sentence_ranking --batch-size 1 --save-predictions preds.tsv > validate_preds.log 2>&1
# each valid example's four option scores (fairseq's model, one option sequence at a time, file order)
$PY - <<'PY' 2> scores.log
import json
import torch
from fairseq import checkpoint_utils
models, cfg, task = checkpoint_utils.load_model_ensemble_and_task(["ck/checkpoint_best.pt"], arg_overrides={"data": "ranking-bin"})
model = models[0].eval()
task.load_dataset("valid")
data = task.dataset("valid")
scores = []
with torch.no_grad():
    for i in range(len(data)):
        item = data[i]
        row = [model(item[f"net_input{k}.src_tokens"][None], classification_head_name="sentence_classification_head")[0].item()
               for k in range(1, 5)]
        scores.append(row)
json.dump({"valid_scores": scores, "valid_targets": [int(data[i]["target"]) for i in range(len(data))]},
          open("scores.json", "w"))
PY

# ---- copy what the tests read (the logs' progress lines only)
cp -r ranking-bin "$OUT/data"
rm -f "$OUT"/data/input*/preprocess.log
cp ck/checkpoint_best.pt "$OUT/finetuned.pt"
grep -E "train_inner|valid on" train.log > "$OUT/train.log"
grep "valid on" validate.log > "$OUT/validate.log"
cp preds.tsv scores.json "$OUT/"
rm -rf "$WORK"
