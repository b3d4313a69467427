"""Causal language models (the ``causal_lm`` family): import, units, text data and perplexity.

Importing this package does not import ``transformers``; the functions that need it do.
"""

from layerprune.lm.llama2c import import_llama2c, read_llama2c
from layerprune.lm.model import CONTAINERS, CausalLM, load_causal_lm, save_causal_lm
from layerprune.lm.text import Perplexity, TokenWindows, perplexity, read_documents, tokenize_file

__all__ = [
    "CONTAINERS",
    "CausalLM",
    "Perplexity",
    "TokenWindows",
    "import_llama2c",
    "load_causal_lm",
    "perplexity",
    "read_documents",
    "read_llama2c",
    "save_causal_lm",
    "tokenize_file",
]
