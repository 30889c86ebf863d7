#!/usr/bin/env bash
# The main job on the bundled corpus (examples/data/bible-en-es): tokenize + BPE, binarize, and (as
# the later stages land) train a small transformer, translate the test set and score it.
# Outputs go to ${DEMO_OUT:-demo-out}.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${DEMO_OUT:-demo-out}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} MKL_NUM_THREADS=${MKL_NUM_THREADS:-2}
mkdir -p "$OUT"
echo "== 1/2 tokenize (sacremoses) and learn a joint BPE (subword-nmt) -> $OUT/text"
python3 examples/prepare_text.py --src en --tgt es --input examples/data/bible-en-es --output "$OUT/text" --merges 2000 2>/dev/null
echo "== 2/2 binarize -> $OUT/data-bin"
seqloom preprocess --source-lang en --target-lang es \
  --trainpref "$OUT/text/train.bpe" --validpref "$OUT/text/valid.bpe" --testpref "$OUT/text/test.bpe" \
  --destdir "$OUT/data-bin" --joined-dictionary --workers 2
