#!/usr/bin/env bash
# m2m_100's layout in miniature, for tests/models/test_release_layouts.py (run by make_release_layouts.sh,
# or run by itself from the repository root with the same FAIRSEQ_PYTHON; sentencepiece must be importable by
# it). Writes tests/fixtures/release_layouts/m2m_100/:
#   spm.model        a SentencePiece model (300 pieces) trained on 1000 English and 1000 Spanish mt lines
#   data_dict.txt    the joined dictionary of the encoded training text (m2m_100's data_dict.128k.txt)
#   model_dict.txt   data_dict.txt, then the language tokens __en__ __es__ and two madeupword fillers
#                    (m2m_100's model_dict.128k.txt, read with --fixed-dictionary)
#   language_pairs.txt  en-es,es-en (given to --lang-pairs as a file, as the release does)
#   model.pt         transformer_wmt_en_de_big with pre-norm and shared embeddings, trained by fairseq's
#                    translation_multi_simple_epoch (--encoder-langtok src --decoder-langtok), args layout, its
#                    saved --fixed-dictionary a path that is not here (the trainer's)
#   test.en-es.*     40 test pairs binarized with data_dict.txt
#   generate.en-es.beam5.txt.gz / interactive.es-en.beam5.txt  fairseq's outputs, m2m_100's README commands
set -euo pipefail
export TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
PY=${FAIRSEQ_PYTHON:-python}
MT=${SEQLOOM_FAIRSEQ_FIXTURES:-tests/fixtures/fairseq}/mt
DM=tests/fixtures/release_layouts/m2m_100
HELPER=scripts/release_layout_checkpoint.py
MTMP=$(mktemp -d)
trap 'rm -rf "$MTMP"' EXIT
mkdir -p "$DM"
"$PY" - "$MT/text" "$DM" "$MTMP" <<'PY'
import sys
import sentencepiece as spm
text, out, tmp = sys.argv[1:]
lines = {lang: open(f"{text}/train.{lang}", encoding="utf-8").read().splitlines() for lang in ("en", "es")}
with open(f"{tmp}/spm.txt", "w", encoding="utf-8") as f:
    f.write("\n".join(lines["en"][:1000] + lines["es"][:1000]) + "\n")
spm.SentencePieceTrainer.train(input=f"{tmp}/spm.txt", model_prefix=f"{out}/spm", vocab_size=300,
                               character_coverage=1.0, model_type="bpe", seed_sentencepiece_size=10000,
                               num_threads=1, minloglevel=2)
sp = spm.SentencePieceProcessor(model_file=f"{out}/spm.model")
for split, first, last in (("train", 0, 1000), ("test", 1000, 1040)):  # "test": 40 further training lines
    for lang in ("en", "es"):
        with open(f"{tmp}/{split}.{lang}", "w", encoding="utf-8") as f:
            for line in lines[lang][first:last]:
                f.write(" ".join(sp.encode(line, out_type=str)) + "\n")
PY
rm -f "$DM/spm.vocab"
"$PY" -m fairseq_cli.preprocess -s en -t es --trainpref "$MTMP/train" --destdir "$MTMP/dict" --joined-dictionary \
  --workers 1 > /dev/null
cp "$MTMP/dict/dict.en.txt" "$DM/data_dict.txt"
{ cat "$DM/data_dict.txt"; printf '__en__ 1\n__es__ 1\nmadeupword0000 0\nmadeupword0001 0\n'; } > "$DM/model_dict.txt"
printf 'en-es,es-en\n' > "$DM/language_pairs.txt"
"$PY" -m fairseq_cli.preprocess -s en -t es --srcdict "$DM/data_dict.txt" --tgtdict "$DM/data_dict.txt" \
  --trainpref "$MTMP/train" --destdir "$MTMP/bin" --workers 1 > /dev/null
"$PY" -m fairseq_cli.preprocess -s en -t es --srcdict "$DM/data_dict.txt" --tgtdict "$DM/data_dict.txt" \
  --testpref "$MTMP/test" --destdir "$DM" --workers 1 > /dev/null
rm -f "$DM/preprocess.log" "$DM/dict.en.txt" "$DM/dict.es.txt"
M2M=(--task translation_multi_simple_epoch --lang-pairs "$DM/language_pairs.txt" --encoder-langtok src
     --decoder-langtok --fixed-dictionary "$DM/model_dict.txt")
argv=("$MTMP/bin" "${M2M[@]}" --arch transformer_wmt_en_de_big --encoder-normalize-before --decoder-normalize-before
      --share-all-embeddings --encoder-layers 1 --decoder-layers 1 --encoder-embed-dim 16 --decoder-embed-dim 16
      --encoder-attention-heads 2 --decoder-attention-heads 2 --encoder-ffn-embed-dim 64 --decoder-ffn-embed-dim 64
      --cpu --num-workers 0 --optimizer adam --adam-betas "(0.9, 0.98)" --lr 0.01 --lr-scheduler inverse_sqrt
      --warmup-updates 10 --criterion label_smoothed_cross_entropy --label-smoothing 0.1 --max-tokens 4096
      --max-update 300 --disable-validation --no-save-optimizer-state --no-epoch-checkpoints --log-format simple
      --seed 1)
"$PY" -m fairseq_cli.train "${argv[@]}" --save-dir "$MTMP/ck" > "$MTMP/train.log" 2>&1
"$PY" "$HELPER" args "$MTMP/ck/checkpoint_last.pt" "$DM/model.pt" -- "${argv[@]}"
# as in the released files, the saved --fixed-dictionary names a path on the machine that trained the model
"$PY" - "$DM/model.pt" <<'PY'
import sys
import torch
state = torch.load(sys.argv[1], map_location="cpu", weights_only=False)
state["args"].fixed_dictionary = "/trainer/m2m_100/model_dict.txt"
torch.save(state, sys.argv[1])
PY
"$PY" -m fairseq_cli.generate "$DM" "${M2M[@]}" -s en -t es --cpu --path "$DM/model.pt" --gen-subset test \
  --batch-size 32 --beam 5 --max-len-b 30 --remove-bpe sentencepiece \
  | grep -E '^[STHDP]-' | gzip -9n > "$DM/generate.en-es.beam5.txt.gz"
head -n 5 "$MT/text/test.es" | "$PY" -m fairseq_cli.interactive "$DM" "${M2M[@]}" -s es -t en --cpu \
  --path "$DM/model.pt" --bpe sentencepiece --sentencepiece-model "$DM/spm.model" --beam 5 --max-len-b 30 \
  | grep -v '^W-' > "$DM/interactive.es-en.beam5.txt"
