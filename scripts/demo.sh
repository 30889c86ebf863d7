#!/usr/bin/env bash
# The main job on the bundled corpus (examples/data/bible-en-es): tokenize + BPE, binarize, train a
# small transformer, translate the test set and score it. Outputs go to ${DEMO_OUT:-demo-out}; a new
# run replaces the previous run's outputs there.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${DEMO_OUT:-demo-out}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} MKL_NUM_THREADS=${MKL_NUM_THREADS:-2}
rm -rf "$OUT/text" "$OUT/data-bin" "$OUT/checkpoints" "$OUT/generate"
mkdir -p "$OUT"
echo "== 1/4 tokenize (sacremoses) and learn a joint BPE (subword-nmt) -> $OUT/text"
python3 examples/prepare_text.py --src en --tgt es --input examples/data/bible-en-es --output "$OUT/text" --merges 2000 2>/dev/null
echo "== 2/4 binarize -> $OUT/data-bin"
seqloom preprocess --source-lang en --target-lang es \
  --trainpref "$OUT/text/train.bpe" --validpref "$OUT/text/valid.bpe" --testpref "$OUT/text/test.bpe" \
  --destdir "$OUT/data-bin" --joined-dictionary --workers 2
echo "== 3/4 train a small transformer (2+2 layers, d128; a few minutes on 2 cores) -> $OUT/checkpoints"
seqloom train "$OUT/data-bin" --cpu --task translation --arch transformer \
  --encoder-layers 2 --decoder-layers 2 --encoder-embed-dim 128 --decoder-embed-dim 128 \
  --encoder-ffn-embed-dim 256 --decoder-ffn-embed-dim 256 --encoder-attention-heads 4 --decoder-attention-heads 4 \
  --share-all-embeddings --dropout 0.1 \
  --optimizer adam --adam-betas '(0.9, 0.98)' --lr 2e-3 --lr-scheduler inverse_sqrt --warmup-updates 100 \
  --criterion label_smoothed_cross_entropy --label-smoothing 0.1 \
  --max-tokens 4096 --max-update 300 --seed 1 --num-workers 0 \
  --log-format simple --log-interval 50 --no-epoch-checkpoints --save-dir "$OUT/checkpoints"
seqloom validate "$OUT/data-bin" --cpu --task translation --path "$OUT/checkpoints/checkpoint_best.pt" \
  --valid-subset valid,test --max-tokens 4096 --num-workers 0
echo "== 4/4 translate the test set (beam 5, BPE removed) and score it -> $OUT/generate"
seqloom generate "$OUT/data-bin" --cpu --path "$OUT/checkpoints/checkpoint_best.pt" --gen-subset test \
  --beam 5 --batch-size 32 --remove-bpe --no-progress-bar --results-path "$OUT/generate"
tail -n 1 "$OUT/generate/generate-test.txt"
# the same hypotheses scored from files, as a user scores any system output (sacrebleu on tokenized text)
grep -P '^D-' "$OUT/generate/generate-test.txt" | sort -t- -k2,2n | cut -f3 > "$OUT/generate/test.hyp"
grep -P '^T-' "$OUT/generate/generate-test.txt" | sort -t- -k2,2n | cut -f2 > "$OUT/generate/test.ref"
seqloom score --sys "$OUT/generate/test.hyp" --ref "$OUT/generate/test.ref" --sacrebleu
