#!/usr/bin/env bash
# mbart.cc25's layout in miniature, and a model fine-tuned from it as the mBART README does, for
# tests/models/test_release_layouts.py (run by make_release_layouts.sh, or by itself from the repository root
# with the same FAIRSEQ_PYTHON; sentencepiece must be importable by it). Writes
# tests/fixtures/release_layouts/:
#   mbart_cc25/        model.pt: mbart_large (1 layer, 16 dimensions) pre-trained by fairseq's
#                      multilingual_denoising --add-lang-token --langs <the 25 cc25 languages> (every language
#                      folder but en_XX and es_XX holds a copy of en_XX's text), args layout; dict.txt without
#                      the language tokens (the task appends [ar_AR] ... [zh_CN] and <mask>); sentence.bpe.model
#                      (a 200-piece SentencePiece model); hub.json: fairseq's BARTModel.from_pretrained encode
#                      ids and extract_features on it
#   mbart_cc25_en_es/  model.pt: that model fine-tuned by translation_from_pretrained_bart (--langs the cc25
#                      list, --prepend-bos, --restore-file with the --reset-* flags, en_XX -> es_XX), args
#                      layout; dict.en_XX.txt, dict.es_XX.txt, sentence.bpe.model, 30 test pairs and
#                      fairseq-generate's lines (the README's command, --beam 5 --max-len-b 30)
# fairseq 0.12.3.1's translation_from_pretrained_bart fails on its own; tests/fixtures/mbart/fairseq_fixed.py runs it.
set -euo pipefail
export TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
PY=${FAIRSEQ_PYTHON:-python}
FIXED=tests/fixtures/mbart/fairseq_fixed.py
MT=${SEQLOOM_FAIRSEQ_FIXTURES:-tests/fixtures/fairseq}/mt
PRE=tests/fixtures/release_layouts/mbart_cc25
FT=tests/fixtures/release_layouts/mbart_cc25_en_es
HELPER=scripts/release_layout_checkpoint.py
BTMP=$(mktemp -d)
trap '[ -n "${KEEP_TMP:-}" ] || rm -rf "$BTMP"' EXIT
mkdir -p "$PRE" "$FT"
CC25=ar_AR,cs_CZ,de_DE,en_XX,es_XX,et_EE,fi_FI,fr_XX,gu_IN,hi_IN,it_IT,ja_XX,kk_KZ,ko_KR,lt_LT,lv_LV,my_MM,ne_NP,nl_XX,ro_RO,ru_RU,si_LK,tr_TR,vi_VN,zh_CN
"$PY" - "$MT/text" "$PRE" "$BTMP" <<'PY'
import sys
import sentencepiece as spm
text, out, tmp = sys.argv[1:]
lines = {lang: open(f"{text}/train.{lang}", encoding="utf-8").read().splitlines() for lang in ("en", "es")}
with open(f"{tmp}/spm.txt", "w", encoding="utf-8") as f:
    f.write("\n".join(lines["en"][:600] + lines["es"][:600]) + "\n")
spm.SentencePieceTrainer.train(input=f"{tmp}/spm.txt", model_prefix=f"{tmp}/sentence.bpe", vocab_size=200,
                               character_coverage=1.0, model_type="bpe", normalization_rule_name="identity",
                               num_threads=1, minloglevel=2)
sp = spm.SentencePieceProcessor(model_file=f"{tmp}/sentence.bpe.model")
for split, first, last in (("train", 0, 600), ("test", 1000, 1030)):  # "test": 30 further training lines
    for lang, code in (("en", "en_XX"), ("es", "es_XX")):
        with open(f"{tmp}/{split}.{code}", "w", encoding="utf-8") as f:
            for line in lines[lang][first:last]:
                f.write(" ".join(sp.encode(line, out_type=str)) + "\n")
PY
cp "$BTMP/sentence.bpe.model" "$PRE/"
cp "$BTMP/sentence.bpe.model" "$FT/"
cat "$BTMP/train.en_XX" "$BTMP/train.es_XX" > "$BTMP/joint"
"$PY" -m fairseq_cli.preprocess --only-source --trainpref "$BTMP/joint" --destdir "$BTMP/dict" --workers 1 > /dev/null
cp "$BTMP/dict/dict.txt" "$PRE/dict.txt"
# ---- pre-training: one folder per cc25 language
for lang in en_XX es_XX; do
  "$PY" -m fairseq_cli.preprocess --only-source --srcdict "$PRE/dict.txt" --trainpref "$BTMP/train.$lang" \
    --destdir "$BTMP/den/$lang" --workers 1 > /dev/null
done
for lang in ${CC25//,/ }; do
  [ -d "$BTMP/den/$lang" ] || cp -r "$BTMP/den/en_XX" "$BTMP/den/$lang"
done
cp "$PRE/dict.txt" "$BTMP/den/dict.txt"
MODEL=(--arch mbart_large --encoder-normalize-before --decoder-normalize-before --layernorm-embedding --encoder-layers 1 --decoder-layers 1 --encoder-embed-dim 16 --decoder-embed-dim 16
       --encoder-attention-heads 2 --decoder-attention-heads 2 --encoder-ffn-embed-dim 32 --decoder-ffn-embed-dim 32
       --max-source-positions 256 --max-target-positions 256)
COMMON=(--cpu --num-workers 0 --optimizer adam --adam-betas "(0.9, 0.98)" --adam-eps 1e-06 --lr 0.005
        --lr-scheduler inverse_sqrt --warmup-updates 10 --disable-validation --no-save-optimizer-state
        --no-epoch-checkpoints --log-format simple --seed 1)
argv=("$BTMP/den" --task multilingual_denoising --add-lang-token --langs "$CC25" --tokens-per-sample 256
      --sample-break-mode complete --mask 0.3 --mask-random 0.1 --mask-length span-poisson --poisson-lambda 3.5
      --replace-length 1 --permute-sentences 1 --rotate 0 --multilang-sampling-alpha 0.7
      --criterion cross_entropy --max-tokens 1024 --max-update 60 "${MODEL[@]}" "${COMMON[@]}")
"$PY" -m fairseq_cli.train "${argv[@]}" --save-dir "$BTMP/ck" > "$BTMP/pretrain.log" 2>&1
"$PY" "$HELPER" args "$BTMP/ck/checkpoint_last.pt" "$PRE/model.pt" -- "${argv[@]}"
rm -rf "$BTMP/ck"
# ---- fine-tuning en_XX -> es_XX from it, as the mBART README
for lang in en_XX es_XX; do cp "$PRE/dict.txt" "$FT/dict.$lang.txt"; done
"$PY" -m fairseq_cli.preprocess -s en_XX -t es_XX --srcdict "$PRE/dict.txt" --tgtdict "$PRE/dict.txt" \
  --trainpref "$BTMP/train" --destdir "$BTMP/ft" --workers 1 > /dev/null
"$PY" -m fairseq_cli.preprocess -s en_XX -t es_XX --srcdict "$PRE/dict.txt" --tgtdict "$PRE/dict.txt" \
  --testpref "$BTMP/test" --destdir "$FT" --workers 1 > /dev/null
rm -f "$FT/preprocess.log"
argv=("$BTMP/ft" --task translation_from_pretrained_bart --source-lang en_XX --target-lang es_XX --langs "$CC25" --prepend-bos
      --criterion label_smoothed_cross_entropy --label-smoothing 0.2 --max-tokens 1024 --max-update 600
      --restore-file "$PRE/model.pt" --reset-optimizer --reset-meters --reset-dataloader --reset-lr-scheduler
      "${MODEL[@]}" "${COMMON[@]}")
"$PY" "$FIXED" train "${argv[@]}" --save-dir "$BTMP/ck" > "$BTMP/finetune.log" 2>&1
"$PY" "$HELPER" args "$BTMP/ck/checkpoint_last.pt" "$FT/model.pt" -- "${argv[@]}"
"$PY" "$FIXED" generate "$FT" --cpu --path "$FT/model.pt" --task translation_from_pretrained_bart --gen-subset test \
  -t es_XX -s en_XX --bpe sentencepiece --sentencepiece-model "$FT/sentence.bpe.model" --remove-bpe sentencepiece \
  --batch-size 32 --required-batch-size-multiple 1 --langs "$CC25" --prepend-bos --beam 5 --max-len-b 30 \
  | grep -E '^[STHDP]-' | gzip -9n > "$FT/generate.en_XX-es_XX.beam5.txt.gz"
"$PY" - "$PRE" "$MT/text/test.en" <<'PY'
import json
import sys
from fairseq.models.bart import BARTModel
folder, text = sys.argv[1:]
bart = BARTModel.from_pretrained(folder, checkpoint_file="model.pt", data_name_or_path=folder, bpe="sentencepiece",
                                 sentencepiece_model=f"{folder}/sentence.bpe.model")
bart.eval()
lines = open(text, encoding="utf-8").read().splitlines()[:3]
out = {"dictionary_size": len(bart.task.source_dictionary), "inputs": lines, "encode": [], "features": []}
for line in lines:
    ids = bart.encode(line)
    out["encode"].append(ids.tolist())
    out["features"].append([[round(x, 6) for x in row] for row in bart.extract_features(ids)[0].tolist()])
json.dump(out, open(f"{folder}/hub.json", "w"), indent=None, ensure_ascii=False)
PY
