"""Python hub interfaces: ``TransformerModel.from_pretrained(dir)`` -> translate, score, generate.

from seqloom.hub import TransformerModel
hub = TransformerModel.from_pretrained("model_dir", checkpoint_file="model.pt", tokenizer="moses",
                                       bpe="subword_nmt", bpe_codes="model_dir/bpecodes")
hub.translate("Hello world!", beam=5)
"""

from seqloom.hub.base import GeneratorHubInterface, HubBatching
from seqloom.hub.pretrained import TransformerModel, from_pretrained
from seqloom.hub.translation import TranslationHub

__all__ = ["GeneratorHubInterface", "HubBatching", "TransformerModel", "TranslationHub", "from_pretrained"]
