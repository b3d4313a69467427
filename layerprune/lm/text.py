"""Text for causal language models: tokenised documents, training windows, perplexity.

Documents: a text file is split at lines ``<|endoftext|>`` (the TinyStories separator)
into documents; a file without that line is one document. Each document is stripped and
tokenised with the model directory's own tokenizer (the Hugging Face one), with BOS first,
as llama2.c prepared its training stories; the documents are concatenated into one stream.

Perplexity (Hugging Face's "perplexity of fixed-length models" recipe): windows of
``seq_len`` tokens start every ``stride`` tokens; each window is scored only on the tokens
no earlier window scored (the first window on all its tokens but the first), so every
token after the first is predicted exactly once, from up to ``seq_len - 1`` tokens of
context, and at least ``seq_len - stride`` of context once the stream is longer than a
window. The stride is below ``seq_len`` (windows share at least one token, so that a
window's first scored token has context); ``stride = seq_len - 1`` is the cheapest and
gives the least context, ``stride = 1`` the most;
perplexity = exp(mean negative log-likelihood per scored token).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

__all__ = [
    "DOCUMENT_SEPARATOR",
    "Perplexity",
    "TokenWindows",
    "load_tokenizer",
    "perplexity",
    "read_documents",
    "text_dataset",
    "tokenize_file",
]

DOCUMENT_SEPARATOR = "<|endoftext|>"


def read_documents(path: str | os.PathLike) -> list[str]:
    """The non-empty documents of a text file (split at ``<|endoftext|>`` lines), stripped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"text file {path} not found; point the config's text paths at existing files")
    docs, current = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() == DOCUMENT_SEPARATOR:
            docs.append("\n".join(current))
            current = []
        else:
            current.append(line)
    docs.append("\n".join(current))
    docs = [d.strip() for d in docs if d.strip()]
    if not docs:
        raise ValueError(f"text file {path} holds no text")
    return docs


def load_tokenizer(source: str | os.PathLike) -> Any:
    """A Hugging Face tokenizer from a directory (a model directory) or a sentencepiece ``.model`` file
    (converted as Llama's tokenizer, as llama2.c's models use it)."""
    source = Path(source)
    if source.is_file():
        import shutil
        import tempfile

        from transformers import LlamaTokenizer

        with tempfile.TemporaryDirectory() as tmp:
            shutil.copyfile(source, Path(tmp) / "tokenizer.model")
            return LlamaTokenizer.from_pretrained(tmp, local_files_only=True)
    if not source.is_dir():
        raise FileNotFoundError(f"tokenizer {source} not found; give a model directory or a sentencepiece .model file")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(source, local_files_only=True)


def tokenize_file(path: str | os.PathLike, tokenizer: str | os.PathLike, *, max_tokens: int | None = None) -> Tensor:
    """The token stream of a text file: per document BOS + its tokens, concatenated (int64, 1-D).

    Args:
        path: a UTF-8 text file.
        tokenizer: a tokenizer directory (a model directory) or a sentencepiece ``.model`` file.
        max_tokens: keep only the first ``max_tokens`` tokens (None: all).
    """
    tokenizer = load_tokenizer(tokenizer)
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    ids: list[int] = []
    for doc in read_documents(path):
        ids += bos + tokenizer(doc, add_special_tokens=False)["input_ids"]
        if max_tokens is not None and len(ids) >= max_tokens:
            break
    return torch.tensor(ids[:max_tokens] if max_tokens is not None else ids, dtype=torch.long)


class TokenWindows(Dataset):
    """Disjoint windows of a token stream as ``(x, y)`` = (tokens, next tokens), each (seq_len,).

    For calibration (criteria) and healing fine-tunes: the training loop and extraction read
    ``(x, y)`` pairs, and :class:`~layerprune.lm.model.CausalLM` returns logits in the layout
    ``F.cross_entropy(logits, y)`` takes.

    Args:
        tokens: the 1-D token stream.
        seq_len: tokens per window.
        size: number of windows to keep (None: all), chosen with ``seed`` (0 keeps them in order).
        seed: seeds which windows are kept when ``size`` is smaller than the number available.
    """

    def __init__(self, tokens: Tensor, seq_len: int, *, size: int | None = None, seed: int = 0) -> None:
        if seq_len < 2:
            raise ValueError(f"seq_len must be at least 2, got {seq_len}")
        count = (len(tokens) - 1) // seq_len
        if count < 1:
            raise ValueError(f"{len(tokens)} tokens do not fill one window of {seq_len} tokens; use a longer text")
        order = torch.arange(count)
        if size is not None and size < count:
            order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:size].sort().values
        self.tokens, self.seq_len, self.starts = tokens, seq_len, (order * seq_len).tolist()

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        window = self.tokens[self.starts[i] : self.starts[i] + self.seq_len + 1]
        return window[:-1], window[1:]


def text_dataset(cfg: dict, split: str) -> TokenWindows:
    """The config's text data (``data.name: text``): every window of ``train_text`` (calibration,
    healing) or of ``test_text`` (the first ``max_eval_tokens``), ``seq_len`` tokens each."""
    key = "train_text" if split == "train" else "test_text"
    if cfg[key] is None:
        raise ValueError(f"data.{key} is not set; a causal language model needs a text file there")
    max_tokens = None if split == "train" else cfg["max_eval_tokens"]
    return TokenWindows(tokenize_file(cfg[key], cfg["tokenizer"], max_tokens=max_tokens), cfg["seq_len"])


@dataclass(frozen=True)
class Perplexity:
    """Outcome of :func:`perplexity`."""

    perplexity: float
    nll: float  # mean negative log-likelihood per scored token (nats)
    accuracy: float  # share of scored tokens whose most likely prediction is right (next-token top-1)
    tokens: int  # scored tokens
    tokens_per_s: float  # tokens through the model (windows overlap: more than ``tokens``) per second
    seq_len: int
    stride: int


def _windows(n: int, seq_len: int, stride: int) -> Iterator[tuple[int, int, int]]:
    """(begin, end, first scored position) of every window over ``n`` tokens."""
    scored_until = 1  # token 0 has no context
    begin = 0
    while scored_until < n:
        end = min(begin + seq_len, n)
        yield begin, end, scored_until
        scored_until = end
        begin += stride


@torch.no_grad()
def perplexity(
    model: nn.Module,
    tokens: Tensor,
    *,
    seq_len: int,
    stride: int,
    batch_size: int = 8,
    device: torch.device | str = "cpu",
) -> Perplexity:
    """Sliding-window perplexity of ``model`` (a :class:`~layerprune.lm.model.CausalLM`) on ``tokens``.

    Raises:
        ValueError: ``stride`` not in [1, seq_len - 1], or fewer than 2 tokens.
    """
    if not 1 <= stride < seq_len:
        raise ValueError(f"stride must be between 1 and seq_len - 1 ({seq_len - 1}), got {stride}")
    if len(tokens) < 2:
        raise ValueError("perplexity needs at least 2 tokens")
    model = model.to(device).eval()
    windows = list(_windows(len(tokens), seq_len, stride))
    nll, scored, seen, correct = 0.0, 0, 0, 0
    start = time.perf_counter()
    # windows of the same length go through together
    by_length: dict[int, list[tuple[int, int, int]]] = {}
    for w in windows:
        by_length.setdefault(w[1] - w[0], []).append(w)
    for length, group in by_length.items():
        for i in range(0, len(group), batch_size):
            chunk = group[i : i + batch_size]
            x = torch.stack([tokens[b:e] for b, e, _ in chunk]).to(device)
            y = x.roll(-1, dims=1)
            mask = torch.zeros_like(x, dtype=torch.bool)
            for row, (b, _e, first) in enumerate(chunk):
                mask[row, first - b - 1 : length - 1] = True  # position p predicts token p + 1
            target = torch.where(mask, y, torch.full_like(y, -100))
            logits = model(x)
            nll += float(F.cross_entropy(logits.float(), target, ignore_index=-100, reduction="sum"))
            correct += int((logits.argmax(dim=1) == y)[mask].sum())
            scored += int(mask.sum())
            seen += x.numel()
    seconds = time.perf_counter() - start
    if scored != len(tokens) - 1:  # pragma: no cover - guards the window arithmetic
        raise AssertionError(f"scored {scored} tokens, expected {len(tokens) - 1}")
    mean = nll / scored
    return Perplexity(math.exp(mean), mean, correct / scored, scored, seen / seconds, seq_len, stride)
