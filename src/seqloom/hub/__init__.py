"""Python hub interfaces: ``TransformerModel.from_pretrained(dir)`` -> translate, score, generate.

from seqloom.hub import TransformerModel
hub = TransformerModel.from_pretrained("model_dir", checkpoint_file="model.pt", tokenizer="moses",
                                       bpe="subword_nmt", bpe_codes="model_dir/bpecodes")
hub.translate("Hello world!", beam=5)

from seqloom.hub import TransformerLanguageModel   # language models: sample, score, generate
from seqloom.hub import BARTModel                  # BART: fill_mask, sample, extract_features, heads
"""

from seqloom.hub.base import GeneratorHubInterface, HubBatching
from seqloom.hub.pretrained import TransformerModel, from_pretrained
from seqloom.hub.translation import TranslationHub

__all__ = [
    "BARTModel",
    "GeneratorHubInterface",
    "HubBatching",
    "TransformerLanguageModel",
    "TransformerModel",
    "TranslationHub",
    "from_pretrained",
]


def __getattr__(name: str) -> object:
    # the language-model hub imports this package's modules, so it is loaded on first use
    if name == "TransformerLanguageModel":  # the model class; its from_pretrained gives the language-model hub
        from seqloom.hub.language_model import TransformerLanguageModel

        return TransformerLanguageModel
    if name == "BARTModel":  # BARTModel.from_pretrained(dir, bpe="gpt2", ...) -> the BART hub
        from seqloom.models.bart.builder import BARTModel

        return BARTModel
    raise AttributeError(f"module 'seqloom.hub' has no attribute {name!r}")
