#!/usr/bin/env bash
# Writes tests/fixtures/roberta/ with fairseq 0.12.3.1 (the peer venv): tiny RoBERTa and XLM-R-layout models
# trained on a slice of the bundled corpus, and what fairseq's hub and tools output for them.
#   bash scripts/make_roberta_fixtures.sh [PEER_VENV]        (from the repository root; ~3 minutes on 2 cores)
set -euo pipefail
VENV=${1:-/work/peer-venvs/fs}
ROOT=$(pwd)
OUT=${FIXTURE_OUT:-$ROOT/tests/fixtures/roberta}
DATA=${SEQLOOM_DATA:-/work/shared/data}
WORK=$(mktemp -d)
trap 'echo "failed: see the logs in $WORK" >&2' ERR
# the peer venv has no sentencepiece: the pieces are made with the project's (the same library fairseq uses),
# and fairseq's hub imports it from a folder holding only that package
SPM_PY=${SPM_PY:-$(command -v python)}
export PATH=$VENV/bin:$PATH TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
PY=$VENV/bin/python
rm -rf "$OUT/gpt2" "$OUT/xlmr" && mkdir -p "$OUT/gpt2" "$OUT/xlmr"
cd "$WORK"

# ---- text: 600 train and 100 valid English verses, GPT-2 BPE ids (fairseq's encoder)
head -n 600 "$DATA/bible-en-es/train.en" > train.txt
head -n 100 "$DATA/bible-en-es/valid.en" > valid.txt
for split in train valid; do
  $PY -m fairseq.examples.roberta.multiprocessing_bpe_encoder --encoder-json "$DATA/gpt2-bpe/encoder.json" \
    --vocab-bpe "$DATA/gpt2-bpe/vocab.bpe" --inputs $split.txt --outputs $split.bpe --keep-empty --workers 1
done
fairseq-preprocess --only-source --trainpref train.bpe --validpref valid.bpe --nwordssrc 1000 \
  --destdir data-bin --workers 1 > /dev/null 2>&1

# ---- pretraining: the RoBERTa README's fairseq-train command (no --fp16 on the CPU), sizes made small
fairseq-train data-bin --cpu --num-workers 0 --seed 1 \
  --task masked_lm --criterion masked_lm \
  --arch roberta_base --sample-break-mode complete --tokens-per-sample 128 \
  --encoder-layers 2 --encoder-embed-dim 32 --encoder-ffn-embed-dim 64 --encoder-attention-heads 2 \
  --optimizer adam --adam-betas '(0.9,0.98)' --adam-eps 1e-6 --clip-norm 0.0 \
  --lr-scheduler polynomial_decay --lr 0.002 --warmup-updates 5 --total-num-update 40 \
  --dropout 0.1 --attention-dropout 0.1 --weight-decay 0.01 \
  --batch-size 16 --update-freq 1 \
  --max-update 40 --log-format simple --log-interval 10 \
  --save-dir ck-pretrain --no-epoch-checkpoints --no-save-optimizer-state > pretrain.log 2>&1
# the same, 8 updates without attention dropout: seeded.log
fairseq-train data-bin --cpu --num-workers 0 --seed 1 --task masked_lm --criterion masked_lm --arch roberta_base \
  --sample-break-mode complete --tokens-per-sample 128 \
  --encoder-layers 2 --encoder-embed-dim 32 --encoder-ffn-embed-dim 64 --encoder-attention-heads 2 \
  --optimizer adam --adam-betas '(0.9,0.98)' --adam-eps 1e-6 --clip-norm 0.0 --lr-scheduler polynomial_decay \
  --lr 0.002 --warmup-updates 5 --total-num-update 40 --dropout 0.1 --attention-dropout 0.0 --weight-decay 0.01 \
  --batch-size 16 --update-freq 1 --max-update 8 --log-format simple --log-interval 1 --no-save \
  --disable-validation --save-dir ck-seeded > seeded.log 2>&1
# three epochs with attention dropout, validated after each on all 33 blocks: seeded_valid.log
fairseq-train data-bin --cpu --num-workers 0 --seed 1 --task masked_lm --criterion masked_lm --arch roberta_base \
  --sample-break-mode complete --tokens-per-sample 128 \
  --encoder-layers 2 --encoder-embed-dim 32 --encoder-ffn-embed-dim 64 --encoder-attention-heads 2 \
  --optimizer adam --adam-betas '(0.9,0.98)' --adam-eps 1e-6 --clip-norm 0.0 --lr-scheduler polynomial_decay \
  --lr 0.002 --warmup-updates 5 --total-num-update 40 --dropout 0.1 --attention-dropout 0.1 --weight-decay 0.01 \
  --batch-size 16 --update-freq 1 --max-update 33 --log-format simple --log-interval 1 --no-save \
  --required-batch-size-multiple 1 --save-dir ck-seeded-valid > seeded_valid.log 2>&1
fairseq-validate data-bin --cpu --num-workers 0 --task masked_lm --criterion masked_lm --tokens-per-sample 128 \
  --sample-break-mode complete --batch-size 16 --required-batch-size-multiple 1 \
  --path ck-pretrain/checkpoint_best.pt > validate.log 2>&1

# ---- fine-tuning: sentence pairs, label 1 if the second verse follows the first (the GLUE recipe's flags)
$PY - <<'PY'
import random
lines = open("valid.txt").read().splitlines()
rng = random.Random(1)
for split, span in (("train", range(0, 80)), ("dev", range(80, 99))):
    a, b, y = [], [], []
    for i in span:
        follows = rng.random() < 0.5
        j = i + 1 if follows else rng.choice([k for k in range(len(lines)) if k != i + 1])
        a.append(lines[i]); b.append(lines[j]); y.append("1" if follows else "0")
    for name, rows in (("input0", a), ("input1", b), ("label", y)):
        open(f"glue.{split}.{name}", "w").write("\n".join(rows) + "\n")
PY
for split in train dev; do for part in input0 input1; do
  $PY -m fairseq.examples.roberta.multiprocessing_bpe_encoder --encoder-json "$DATA/gpt2-bpe/encoder.json" \
    --vocab-bpe "$DATA/gpt2-bpe/vocab.bpe" --inputs glue.$split.$part --outputs glue.$split.$part.bpe \
    --keep-empty --workers 1
done; done
for part in input0 input1; do
  fairseq-preprocess --only-source --trainpref glue.train.$part.bpe --validpref glue.dev.$part.bpe \
    --srcdict data-bin/dict.txt --destdir glue-bin/$part --workers 1 > /dev/null 2>&1
done
fairseq-preprocess --only-source --trainpref glue.train.label --validpref glue.dev.label \
  --destdir glue-bin/label --workers 1 > /dev/null 2>&1
fairseq-train glue-bin --cpu --num-workers 0 --seed 1 \
  --restore-file ck-pretrain/checkpoint_best.pt \
  --max-positions 128 --batch-size 8 --max-tokens 4400 \
  --task sentence_prediction --reset-optimizer --reset-dataloader --reset-meters \
  --required-batch-size-multiple 1 --init-token 0 --separator-token 2 \
  --arch roberta_base --criterion sentence_prediction \
  --encoder-layers 2 --encoder-embed-dim 32 --encoder-ffn-embed-dim 64 --encoder-attention-heads 2 \
  --classification-head-name toy_head --num-classes 2 \
  --dropout 0.1 --attention-dropout 0.1 --weight-decay 0.1 \
  --optimizer adam --adam-betas "(0.9, 0.98)" --adam-eps 1e-06 --clip-norm 0.0 \
  --lr-scheduler polynomial_decay --lr 1e-3 --total-num-update 20 --warmup-updates 2 \
  --max-update 20 --best-checkpoint-metric accuracy --maximize-best-checkpoint-metric \
  --log-format simple --log-interval 10 \
  --save-dir ck-finetune --no-epoch-checkpoints --no-save-optimizer-state --no-last-checkpoints > finetune.log 2>&1

# ---- XLM-R layout: a 200-piece SentencePiece model, --arch xlm made small
$SPM_PY - <<'PY'
import sentencepiece as spm
spm.SentencePieceTrainer.train(input="train.txt", model_prefix="spm", vocab_size=200, model_type="unigram",
                               character_coverage=1.0, seed_sentencepiece_size=10000, num_threads=1,
                               normalization_rule_name="identity")
sp = spm.SentencePieceProcessor(model_file="spm.model")
for split in ("train", "valid"):
    rows = [" ".join(sp.encode(line, out_type=str)) for line in open(f"{split}.txt").read().splitlines()]
    open(f"{split}.spm", "w").write("\n".join(rows) + "\n")
PY
fairseq-preprocess --only-source --trainpref train.spm --validpref valid.spm --destdir spm-bin --workers 1 > /dev/null 2>&1
fairseq-train spm-bin --cpu --num-workers 0 --seed 1 --task masked_lm --criterion masked_lm --arch xlm \
  --encoder-layers 2 --encoder-embed-dim 32 --encoder-ffn-embed-dim 64 --encoder-attention-heads 2 \
  --sample-break-mode complete --tokens-per-sample 256 --optimizer adam --lr 0.002 --batch-size 16 \
  --max-update 30 --log-format simple --log-interval 10 \
  --save-dir ck-xlmr --no-epoch-checkpoints --no-save-optimizer-state > xlmr.log 2>&1

# ---- copy what the tests read
cp data-bin/dict.txt data-bin/valid.bin data-bin/valid.idx data-bin/train.bin data-bin/train.idx "$OUT/gpt2/"
cp ck-pretrain/checkpoint_best.pt "$OUT/gpt2/model.pt"
cp pretrain.log seeded.log seeded_valid.log validate.log finetune.log "$OUT/gpt2/"
mkdir -p "$OUT/gpt2/glue/input0" "$OUT/gpt2/glue/input1" "$OUT/gpt2/glue/label"
for part in input0 input1 label; do cp glue-bin/$part/dict.txt glue-bin/$part/*.bin glue-bin/$part/*.idx "$OUT/gpt2/glue/$part/"; done
cp ck-finetune/checkpoint_best.pt "$OUT/gpt2/finetuned.pt"
cp ck-xlmr/checkpoint_best.pt "$OUT/xlmr/model.pt"
cp spm-bin/dict.txt spm-bin/valid.bin spm-bin/valid.idx "$OUT/xlmr/"
cp spm.model "$OUT/xlmr/sentencepiece.bpe.model"
cp xlmr.log "$OUT/xlmr/train.log"

# ---- fairseq's hub outputs and seeded masking
mkdir -p spm-site && ln -s "$($SPM_PY -c 'import os, sentencepiece; print(os.path.dirname(sentencepiece.__file__))')" spm-site/
cd "$ROOT"
PYTHONPATH=$WORK/spm-site $PY tests/fixtures/roberta/make_hub_reference.py "$OUT" "$DATA" 2> "$WORK/hub.log"
$PY tests/fixtures/roberta/make_prenorm_reference.py "$OUT" 2>> "$WORK/hub.log"
rm -rf "$WORK"
