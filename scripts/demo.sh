#!/usr/bin/env bash
# The main job on the bundled corpus (examples/data/bible-en-es): tokenize + BPE, binarize, train a
# small transformer, translate the test set, then one summary: the model, its test BLEU, three example
# translations and where the outputs are. Outputs go to ${DEMO_OUT:-demo-out}; a new run replaces the
# previous run's outputs there. DEMO_UPDATES (default 850) shortens or lengthens the training.
# On a terminal, training and translation show progress bars; in a log, one line per phase and its time.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${DEMO_OUT:-demo-out}
UPDATES=${DEMO_UPDATES:-850}
DATA=examples/data/bible-en-es
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} MKL_NUM_THREADS=${MKL_NUM_THREADS:-2}
rm -rf "$OUT/text" "$OUT/data-bin" "$OUT/checkpoints" "$OUT/generate" "$OUT/preprocess.log"
mkdir -p "$OUT"

now_ms() { echo $(($(date +%s%N) / 1000000)); }
DEMO_START=$(now_ms)
phase() { # "N/4 what -> where": starts a phase (and ends the previous one with its time)
  end_phase
  PHASE_START=$(now_ms)
  echo "== $1"
}
end_phase() {
  if [[ -n ${PHASE_START:-} ]]; then
    local ms=$(($(now_ms) - PHASE_START))
    printf '   (%d.%d s)\n' $((ms / 1000)) $((ms % 1000 / 100))
  fi
}

phase "1/4 tokenize (sacremoses) and learn a joint BPE (subword-nmt) -> $OUT/text"
python3 examples/prepare_text.py --src en --tgt es --input "$DATA" --output "$OUT/text" --merges 2000 2>/dev/null

phase "2/4 binarize -> $OUT/data-bin"
seqloom preprocess --source-lang en --target-lang es \
  --trainpref "$OUT/text/train.bpe" --validpref "$OUT/text/valid.bpe" --testpref "$OUT/text/test.bpe" \
  --destdir "$OUT/data-bin" --joined-dictionary --workers 2 >"$OUT/preprocess.log" 2>&1 \
  || { cat "$OUT/preprocess.log"; exit 1; }
grep -E "train\.bpe\.(en|es):|Wrote" "$OUT/preprocess.log"

phase "3/4 train a small transformer (2+2 layers, d128, $UPDATES updates) -> $OUT/checkpoints"
seqloom train "$OUT/data-bin" --cpu --task translation --arch transformer \
  --encoder-layers 2 --decoder-layers 2 --encoder-embed-dim 128 --decoder-embed-dim 128 \
  --encoder-ffn-embed-dim 256 --decoder-ffn-embed-dim 256 --encoder-attention-heads 4 --decoder-attention-heads 4 \
  --share-all-embeddings --dropout 0.1 \
  --optimizer adam --adam-betas '(0.9, 0.98)' --lr 3e-3 --lr-scheduler inverse_sqrt --warmup-updates 150 \
  --criterion label_smoothed_cross_entropy --label-smoothing 0.1 \
  --max-tokens 4096 --max-update "$UPDATES" --seed 1 --num-workers 0 \
  --log-interval 25 --no-epoch-checkpoints --save-dir "$OUT/checkpoints"

phase "4/4 translate the test set (beam 5; Moses detokenized, BPE removed) -> $OUT/generate"
seqloom generate "$OUT/data-bin" --cpu --path "$OUT/checkpoints/checkpoint_best.pt" --gen-subset test \
  --beam 5 --batch-size 50 --tokenizer moses --bpe subword_nmt --bpe-codes "$OUT/text/bpe.codes" \
  --results-path "$OUT/generate"
end_phase
PHASE_START=

echo "== summary"
python3 scripts/demo_summary.py --checkpoint-dir "$OUT/checkpoints" --generated "$OUT/generate/generate-test.txt" \
  --source "$DATA/test.en" --reference "$DATA/test.es" \
  --output "model=$OUT/checkpoints/checkpoint_best.pt" \
  --output "translations=$OUT/generate/generate-test.txt (H- tokens, D- detokenized text, T- reference)" \
  --output "data=$OUT/data-bin (binarized), $OUT/text (tokenized + BPE)"
ms=$(($(now_ms) - DEMO_START))
printf 'demo done in %d min %d s\n' $((ms / 60000)) $((ms % 60000 / 1000))
