#!/usr/bin/env bash
# Tiny checkpoints in the layouts of fairseq's released translation models, with fairseq's own outputs on
# them, for tests/models/test_release_layouts.py. Each is trained by fairseq for a few dozen updates on the
# mt fixture (its Spanish side renamed "de"), with the released architecture name and the released
# options, sizes shrunk to 16 dimensions and one layer, then rewritten by release_layout_checkpoint.py into
# the released files' layout (an ``args`` Namespace, no ``cfg``):
#   wmt19_en_de/  transformer_wmt_en_de_big, --share-all-embeddings, FFN 8x the width, joined dictionary,
#                 Moses + fastBPE ``bpecodes``, an ensemble (model1.pt:model2.pt), as wmt19.en-de.joined-dict.ensemble
#   wmt16_en_de/  transformer_vaswani_wmt_en_de_big --share-all-embeddings, Moses + subword-nmt ``bpecodes``
#   oldest/       transformer_wmt_en_de with its own output matrix, saved in the pre-2019 layout (old args,
#                 no optimizer_history, fused in_proj, layer_norms.K, decoder.embed_out); data of wmt16_en_de/
#   bart_large_cnn/  bart_large fine-tuned by the translation task, bart.large.cnn's summarization options
#   m2m_100/      translation_multi_simple_epoch, pre-norm, --fixed-dictionary, SentencePiece (release_layouts_m2m.sh)
#   mbart_cc25/, mbart_cc25_en_es/  mbart.cc25's layout and a model fine-tuned from it (release_layouts_mbart.sh)
# Run from the repository root with fairseq 0.12.3.1's interpreter; sacremoses, subword-nmt, fastBPE and
# sentencepiece must be importable by it (e.g. on PYTHONPATH), about two minutes:
#   FAIRSEQ_PYTHON=../peer-venvs/fs/bin/python bash scripts/make_release_layouts.sh
set -euo pipefail
export TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
PY=${FAIRSEQ_PYTHON:-python}
MT=${SEQLOOM_FAIRSEQ_FIXTURES:-tests/fixtures/fairseq}/mt
OUT=tests/fixtures/release_layouts
HELPER=scripts/release_layout_checkpoint.py
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$OUT"/{wmt19_en_de,wmt16_en_de,oldest}
head -n 5 "$MT/text/test.en" > "$OUT/input.en"

TINY=(--encoder-layers 1 --decoder-layers 1 --encoder-embed-dim 16 --decoder-embed-dim 16
      --encoder-attention-heads 2 --decoder-attention-heads 2)
TRAIN=(--cpu --num-workers 0 --optimizer adam --adam-betas "(0.9, 0.98)" --lr 0.01 --lr-scheduler inverse_sqrt
       --warmup-updates 10 --criterion label_smoothed_cross_entropy --label-smoothing 0.1 --max-tokens 4096
       --max-update 300 --disable-validation --no-save-optimizer-state --no-epoch-checkpoints --log-format simple)

train() {  # data, out.pt, mode, training flags...
  local data=$1 out=$2 mode=$3; shift 3
  local argv=("$data" -s en -t de "${TRAIN[@]}" "$@")
  "$PY" -m fairseq_cli.train "${argv[@]}" --save-dir "$TMP/ck" > "$TMP/train.log" 2>&1
  "$PY" "$HELPER" "$mode" "$TMP/ck/checkpoint_last.pt" "$out" -- "${argv[@]}"
  rm -rf "$TMP/ck"
}
outputs() {  # folder, data, path, interactive flags...
  local dir=$1 data=$2 path=$3; shift 3
  "$PY" -m fairseq_cli.generate "$data" -s en -t de --cpu --path "$path" --gen-subset test --beam 5 \
    --max-len-b 30 --batch-size 16 | grep -E '^[STHDP]-' | gzip -9n > "$dir/generate.beam5.txt.gz"
  "$PY" -m fairseq_cli.interactive "$data" -s en -t de --cpu --path "$path" --beam 5 --nbest 2 --max-len-b 30 \
    "$@" < "$OUT/input.en" | grep -v '^W-' > "$dir/interactive.beam5.nbest2.txt"
}

# ---- wmt16: the mt fixture's joined dictionary and subword-nmt codes, es renamed de
D16=$OUT/wmt16_en_de
mkdir -p "$TMP/bin16"
for f in "$MT"/data-bin/*.en-es.*; do
  b=$(basename "$f"); cp "$f" "$TMP/bin16/${b/en-es/en-de}"
done
for f in "$TMP"/bin16/*.es.*; do mv "$f" "${f/.es./.de.}"; done
cp "$MT/data-bin/dict.en.txt" "$TMP/bin16/dict.en.txt"
cp "$MT/data-bin/dict.es.txt" "$TMP/bin16/dict.de.txt"
cp "$TMP"/bin16/dict.*.txt "$D16/"
for l in en es; do head -n 40 "$MT/text/test.bpe.$l" > "$TMP/t16.${l/es/de}"; done
"$PY" -m fairseq_cli.preprocess -s en -t de --srcdict "$D16/dict.en.txt" --tgtdict "$D16/dict.de.txt" \
  --testpref "$TMP/t16" --destdir "$D16" --workers 1 > /dev/null
rm -f "$D16/preprocess.log"
cp "$MT/text/bpe.codes" "$D16/bpecodes"
train "$TMP/bin16" "$D16/model.pt" args --arch transformer_vaswani_wmt_en_de_big --share-all-embeddings \
  "${TINY[@]}" --encoder-ffn-embed-dim 64 --decoder-ffn-embed-dim 64 --seed 1
outputs "$D16" "$D16" "$D16/model.pt" --tokenizer moses --bpe subword_nmt --bpe-codes "$D16/bpecodes"

# ---- the oldest layout: an untied output matrix (decoder.embed_out), the wmt16 folder's data
train "$TMP/bin16" "$OUT/oldest/model.pt" oldest --arch transformer_wmt_en_de "${TINY[@]}" \
  --encoder-ffn-embed-dim 32 --decoder-ffn-embed-dim 32 --seed 3
outputs "$OUT/oldest" "$D16" "$OUT/oldest/model.pt" --tokenizer moses --bpe subword_nmt --bpe-codes "$D16/bpecodes"

# ---- wmt19: fastBPE codes, a joined dictionary of its own, two models
D19=$OUT/wmt19_en_de
cp tests/fixtures/fastbpe/codes "$D19/bpecodes"
"$PY" - "$D19/bpecodes" "$MT/text" "$TMP" <<'PY'
import sys
import fastBPE
codes, text, tmp = sys.argv[1:]
bpe = fastBPE.fastBPE(codes)
for split, first, last in (("train", 0, 1000), ("test", 1000, 1040)):  # "test": 40 further training lines
    for lang, out in (("en", "en"), ("es", "de")):
        lines = open(f"{text}/train.tok.{lang}", encoding="utf-8").read().splitlines()[first:last]
        with open(f"{tmp}/f19{split}.{out}", "w", encoding="utf-8") as f:
            f.write("\n".join(bpe.apply(lines)) + "\n")
PY
"$PY" -m fairseq_cli.preprocess -s en -t de --trainpref "$TMP/f19train" --destdir "$TMP/bin19" --joined-dictionary \
  --workers 1 > /dev/null
cp "$TMP"/bin19/dict.*.txt "$D19/"
"$PY" -m fairseq_cli.preprocess -s en -t de --srcdict "$D19/dict.en.txt" --tgtdict "$D19/dict.de.txt" \
  --testpref "$TMP/f19test" --destdir "$D19" --workers 1 > /dev/null
rm -f "$D19/preprocess.log"
for seed in 1 2; do
  train "$TMP/bin19" "$D19/model$seed.pt" args --arch transformer_wmt_en_de_big --share-all-embeddings \
    "${TINY[@]}" --encoder-ffn-embed-dim 128 --decoder-ffn-embed-dim 128 --seed "$seed" --max-update 150
done
outputs "$D19" "$D19" "$D19/model1.pt:$D19/model2.pt" --tokenizer moses --bpe fastbpe --bpe-codes "$D19/bpecodes"

# ---- bart.large.cnn: bart_large fine-tuned by the translation task on GPT-2 ids (source -> target), as
#      fairseq's summarization recipe does; each target is the first third of its source line
DC=$OUT/bart_large_cnn
BART=$(dirname "$MT")/bart
mkdir -p "$DC"
"$PY" - "$BART/text" "$TMP" <<'PY'
import sys
text, tmp = sys.argv[1:]
for split, src, n in (("train", "train", 600), ("test", "test", 12)):
    lines = open(f"{text}/{src}.bpe", encoding="utf-8").read().splitlines()[:n]
    with open(f"{tmp}/cnn{split}.source", "w") as s, open(f"{tmp}/cnn{split}.target", "w") as t:
        for line in lines:
            ids = line.split()
            s.write(line + "\n")
            t.write(" ".join(ids[: max(1, len(ids) // 3)]) + "\n")
PY
"$PY" -m fairseq_cli.preprocess -s source -t target --srcdict "$BART/model/dict.txt" --tgtdict "$BART/model/dict.txt" \
  --trainpref "$TMP/cnntrain" --testpref "$TMP/cnntest" --destdir "$TMP/bincnn" --workers 1 > /dev/null
cp "$TMP"/bincnn/dict.*.txt "$TMP"/bincnn/test.* "$DC/"
argv=("$TMP/bincnn" -s source -t target --task translation --arch bart_large --layernorm-embedding
      --share-all-embeddings --share-decoder-input-output-embed --truncate-source --required-batch-size-multiple 1
      "${TINY[@]}" --encoder-ffn-embed-dim 64 --decoder-ffn-embed-dim 64 --max-source-positions 256
      --max-target-positions 256 "${TRAIN[@]}" --max-update 150 --seed 1)
"$PY" -m fairseq_cli.train "${argv[@]}" --save-dir "$TMP/ck" > "$TMP/train.log" 2>&1
"$PY" "$HELPER" args "$TMP/ck/checkpoint_last.pt" "$DC/model.pt" -- "${argv[@]}"
CNN=(--beam 4 --lenpen 2.0 --max-len-b 140 --min-len 55 --no-repeat-ngram-size 3)
# --required-batch-size-multiple 1: with fairseq's default 8 its generate drops the last 4 of the 12 sentences
"$PY" -m fairseq_cli.generate "$DC" -s source -t target --cpu --path "$DC/model.pt" --gen-subset test \
  "${CNN[@]}" --batch-size 4 --required-batch-size-multiple 1 | grep -E '^[STHDP]-' | gzip -9n > "$DC/generate.cnn.txt.gz"
"$PY" - "$DC" tests/fixtures/gpt2-bpe "$MT/text/train.en" <<'PY'
import json
import sys
from fairseq.models.bart import BARTModel
folder, gpt2, text = sys.argv[1:]
bart = BARTModel.from_pretrained(folder, checkpoint_file="model.pt", data_name_or_path=folder, bpe="gpt2",
                                 gpt2_encoder_json=f"{gpt2}/encoder.json", gpt2_vocab_bpe=f"{gpt2}/vocab.bpe")
bart.eval()
lines = open(text, encoding="utf-8").read().splitlines()[:6]
options = dict(beam=4, lenpen=2.0, max_len_b=140, min_len=55, no_repeat_ngram_size=3)
out = {"inputs": lines, "options": options, "sample": bart.sample(lines, **options)}
json.dump(out, open(f"{folder}/hub.json", "w"), indent=1, ensure_ascii=False)
PY

# ---- m2m_100 (translation_multi_simple_epoch, pre-norm, --fixed-dictionary, SentencePiece)
FAIRSEQ_PYTHON="$PY" bash scripts/release_layouts_m2m.sh

# ---- mbart.cc25 and a model fine-tuned from it (multilingual_denoising / translation_from_pretrained_bart)
FAIRSEQ_PYTHON="$PY" bash scripts/release_layouts_mbart.sh
