"""Import a llama2.c checkpoint as a Hugging Face ``LlamaForCausalLM`` + tokenizer directory.

llama2.c's legacy format (version 0, ``export.py legacy_export``): a header of 7 int32
``(dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len)`` (a negative
``vocab_size`` means the classifier is not tied to the embedding), then float32 tensors in
this order: token embedding; per-layer attention RMSNorm weights; wq, wk, wv, wo; FFN
RMSNorm weights; w1, w2, w3; the final RMSNorm; the RoPE cos/sin tables (unused: rebuilt
from theta); the classifier when untied. Weights are stored as ``nn.Linear`` (out, in).

llama2.c rotates interleaved pairs (dims 2i, 2i+1) while Hugging Face's Llama rotates the
two halves of each head, so the rows of wq and wk are permuted exactly as Meta's weights
are in transformers' ``convert_llama_weights_to_hf.py``.
"""

from __future__ import annotations

import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from layerprune.io import atomic_dir

__all__ = ["Llama2cHeader", "import_llama2c", "read_llama2c"]

HEADER = struct.Struct("<7i")


@dataclass(frozen=True)
class Llama2cHeader:
    """The seven header fields of a llama2.c checkpoint."""

    dim: int
    hidden_dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int
    seq_len: int
    shared_classifier: bool


def _permute_rotary(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Rows of an interleaved-RoPE q/k projection reordered for half-split RoPE (per head)."""
    out_dim, in_dim = weight.shape
    return weight.view(n_heads, out_dim // n_heads // 2, 2, in_dim).transpose(1, 2).reshape(out_dim, in_dim)


def read_llama2c(path: str | os.PathLike) -> tuple[Llama2cHeader, dict[str, torch.Tensor]]:
    """Reads a llama2.c checkpoint into its header and a Hugging Face Llama state dict.

    Raises:
        ValueError: the file is shorter or longer than its header says (not a legacy llama2.c file).
    """
    path = Path(path)
    raw = path.read_bytes()
    if len(raw) < HEADER.size:
        raise ValueError(f"{path} is too short to be a llama2.c checkpoint ({len(raw)} bytes)")
    dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = HEADER.unpack_from(raw)
    header = Llama2cHeader(dim, hidden, n_layers, n_heads, n_kv, abs(vocab), seq_len, vocab > 0)
    values = np.frombuffer(raw, dtype="<f4", offset=HEADER.size)
    head = dim // n_heads
    kv_dim = n_kv * head
    offset = 0

    def take(*shape: int) -> torch.Tensor:
        nonlocal offset
        count = int(np.prod(shape))
        if offset + count > values.size:
            raise ValueError(f"{path} ends early: its header {header} needs more weights than the file holds")
        out = torch.from_numpy(values[offset : offset + count].copy()).view(*shape)
        offset += count
        return out

    L = n_layers
    embed = take(header.vocab_size, dim)
    attn_norm, wq, wk, wv, wo = (
        take(L, dim),
        take(L, dim, dim),
        take(L, kv_dim, dim),
        take(L, kv_dim, dim),
        take(L, dim, dim),
    )
    ffn_norm, w1, w2, w3 = take(L, dim), take(L, hidden, dim), take(L, dim, hidden), take(L, hidden, dim)
    final_norm = take(dim)
    take(seq_len, head // 2)  # RoPE cos table
    take(seq_len, head // 2)  # RoPE sin table
    classifier = embed if header.shared_classifier else take(header.vocab_size, dim)
    if offset != values.size:
        raise ValueError(f"{path} has {values.size - offset} float32 values more than its header {header} describes")

    state = {"model.embed_tokens.weight": embed, "model.norm.weight": final_norm, "lm_head.weight": classifier}
    for i in range(L):
        p = f"model.layers.{i}."
        state |= {
            p + "input_layernorm.weight": attn_norm[i],
            p + "self_attn.q_proj.weight": _permute_rotary(wq[i], n_heads),
            p + "self_attn.k_proj.weight": _permute_rotary(wk[i], n_kv),
            p + "self_attn.v_proj.weight": wv[i],
            p + "self_attn.o_proj.weight": wo[i],
            p + "post_attention_layernorm.weight": ffn_norm[i],
            p + "mlp.gate_proj.weight": w1[i],
            p + "mlp.down_proj.weight": w2[i],
            p + "mlp.up_proj.weight": w3[i],
        }
    return header, state


def import_llama2c(
    checkpoint: str | os.PathLike,
    tokenizer: str | os.PathLike,
    out: str | os.PathLike,
) -> Path:
    """Writes a ``LlamaForCausalLM`` directory (safetensors) with its tokenizer from llama2.c files.

    Args:
        checkpoint: the llama2.c ``.bin`` (legacy format).
        tokenizer: its sentencepiece model (e.g. ``tok512.model``).
        out: the directory to write; replaced atomically (written beside it, then renamed).

    Returns:
        ``out``, loadable with ``AutoModelForCausalLM.from_pretrained(out, local_files_only=True)``.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    from layerprune.lm.text import load_tokenizer

    header, state = read_llama2c(checkpoint)
    config = LlamaConfig(
        vocab_size=header.vocab_size,
        hidden_size=header.dim,
        intermediate_size=header.hidden_dim,
        num_hidden_layers=header.n_layers,
        num_attention_heads=header.n_heads,
        num_key_value_heads=header.n_kv_heads,
        max_position_embeddings=header.seq_len,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=header.shared_classifier,
        bos_token_id=1,
        eos_token_id=2,
        hidden_act="silu",
        attention_bias=False,
        mlp_bias=False,
    )
    with torch.device("cpu"):
        model = LlamaForCausalLM(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {"lm_head.weight"} if header.shared_classifier else set()
    if set(missing) - tied or unexpected:
        raise ValueError(f"llama2.c import does not match LlamaForCausalLM: missing {missing}, unexpected {unexpected}")
    model.eval()
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        load_tokenizer(tokenizer).save_pretrained(tmp)
        shutil.copyfile(tokenizer, tmp / "tokenizer.model")  # the original, for llama2.c's tools
    return Path(out)
