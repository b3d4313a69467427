"""The real stories260K, imported once per session from ../shared (skipped with the reason without it)."""

from __future__ import annotations

from pathlib import Path

import pytest

CONTINUATION = "there was a little girl named Lily. She loved to play outside in the park"


@pytest.fixture(scope="session")
def stories260k(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LlamaForCausalLM + tokenizer directory imported from the shared llama2.c checkpoint."""
    from layerprune.lm import import_llama2c

    src = shared_dir / "models" / "llama2c-stories260K"
    return import_llama2c(src / "stories260K.bin", src / "tok512.model", tmp_path_factory.mktemp("lm") / "stories260K")


@pytest.fixture(scope="session")
def valid_b(shared_dir: Path, stories260k: Path):
    """The first 3,000 tokens of the in-domain evaluation half."""
    from layerprune.lm import tokenize_file

    return tokenize_file(shared_dir / "data" / "tinystories" / "valid-b.txt", stories260k, max_tokens=3000)
