"""The ``causal_lm`` model family: a Hugging Face causal language model described in units.

:class:`CausalLM` wraps a ``transformers`` model (``LlamaForCausalLM``, Mistral, Qwen2,
GPT-2, OPT) so that it speaks :mod:`layerprune.models.units`: its one stage, ``layers``,
holds the decoder layers (every one removable: each is ``h + attn(h)`` then ``h + mlp(h)``,
so the identity is the layer with both branches zero). Inputs are token ids ``(B, T)``;
the "penultimate" features are the final hidden states after the final norm, one row per
token; the head returns logits ``(B, vocab, T)``, the layout ``F.cross_entropy`` takes
with next-token targets ``(B, T)``. Criteria, extraction and the training loop therefore
run unchanged, with tokens as samples.

The decoder layers need more than the hidden states (rotary position embeddings, the
causal mask). :meth:`CausalLM.forward_stem` runs the model's own embedding code and
captures the keyword arguments its first decoder layer receives; every unit then calls its
layer with them, so nothing here reimplements an architecture's attention.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "CONTAINERS",
    "CausalLM",
    "Containers",
    "DecoderUnit",
    "baseline_language_model",
    "build_causal_lm",
    "load_causal_lm",
    "save_causal_lm",
]


@dataclass(frozen=True)
class Containers:
    """Where an architecture keeps its parts (dotted attribute paths from the ``*ForCausalLM``)."""

    base: str  # the decoder stack whose forward embeds the tokens and calls the layers
    layers: str  # the ``nn.ModuleList`` of decoder layers
    final_norm: str  # the norm applied to the last layer's output before the LM head


_LLAMA_LIKE = Containers(base="model", layers="model.layers", final_norm="model.norm")

#: ``config.model_type`` -> where its decoder layers are
CONTAINERS: dict[str, Containers] = {
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "gpt2": Containers(base="transformer", layers="transformer.h", final_norm="transformer.ln_f"),
    "opt": Containers(base="model.decoder", layers="model.decoder.layers", final_norm="model.decoder.final_layer_norm"),
}


def containers_of(lm: nn.Module) -> Containers:
    """The containers of ``lm``'s architecture; a ValueError names the supported ones."""
    model_type = getattr(getattr(lm, "config", None), "model_type", None)
    if model_type not in CONTAINERS:
        raise ValueError(
            f"unsupported causal LM architecture {model_type!r} ({type(lm).__name__}); layerprune finds decoder "
            f"layers in {sorted(CONTAINERS)} (Llama/Mistral/Qwen2: model.layers, GPT-2: transformer.h, "
            "OPT: model.decoder.layers); add an entry to layerprune.lm.model.CONTAINERS for another"
        )
    return CONTAINERS[model_type]


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


class _StemDone(Exception):
    """Raised by the capture hook once the first decoder layer's inputs are known."""


class DecoderUnit(nn.Module):
    """One decoder layer as a unit: ``unit(h)`` calls the layer with the context of the batch.

    Every decoder layer is removable (:func:`layerprune.models.units.is_removable`): it adds both its
    branches (attention, MLP) to its input, so the identity is the layer with both branches zero.
    """

    removable = True

    def __init__(self, layer: nn.Module, context: dict[str, Any]) -> None:
        super().__init__()
        self.layer = layer
        self.context = context

    def forward(self, h: Tensor) -> Tensor:
        out = self.layer(h, **self.context["kwargs"])
        return out[0] if isinstance(out, tuple) else out


class CausalLM(nn.Module):
    """A causal LM in units (see the module docstring).

    Args:
        lm: a ``transformers`` ``*ForCausalLM`` of a supported architecture.
        source: where it was loaded from (provenance only).
    """

    family = "causal_lm"
    stage_names = ("layers",)

    def __init__(self, lm: nn.Module, source: str | None = None) -> None:
        super().__init__()
        self.containers = containers_of(lm)
        self.lm = lm
        self.source = source
        self._context: dict[str, Any] = {"kwargs": {}}
        self.layers = nn.ModuleList(DecoderUnit(layer, self._context) for layer in self.decoder_layers)

    @property
    def decoder_layers(self) -> nn.ModuleList:
        """The Hugging Face model's own container of decoder layers."""
        return _get(self.lm, self.containers.layers)

    @property
    def blocks_per_stage(self) -> list[int]:
        return [len(self.layers)]

    @property
    def config(self) -> Any:
        return self.lm.config

    def forward_stem(self, x: Tensor) -> Tensor:
        """Token embeddings of ``x`` (B, T); stores the decoder layers' other inputs for the units."""
        captured: dict[str, Any] = {}

        def capture(_m: nn.Module, args: tuple, kwargs: dict) -> None:
            kwargs = dict(kwargs)
            captured["h"] = args[0] if args else kwargs.pop("hidden_states")
            captured["kwargs"] = {k: v for k, v in kwargs.items() if k != "hidden_states"}
            raise _StemDone

        handle = self.decoder_layers[0].register_forward_pre_hook(capture, with_kwargs=True)
        try:
            _get(self.lm, self.containers.base)(input_ids=x, use_cache=False)
        except _StemDone:
            pass
        finally:
            handle.remove()
        if "h" not in captured:
            raise RuntimeError(f"{type(self.lm).__name__} did not call its first decoder layer")
        self._context["kwargs"] = captured["kwargs"]
        return captured["h"]

    def forward_penultimate(self, h: Tensor) -> Tensor:
        """Final hidden states (B, T, D) after the final norm: the LM head's input."""
        norm = _get(self.lm, self.containers.final_norm)
        return norm(h) if norm is not None else h

    def forward_head(self, features: Tensor) -> Tensor:
        """Logits (B, vocab, T): the layout of ``F.cross_entropy`` with targets (B, T)."""
        return self.lm.get_output_embeddings()(features).transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = self.forward_stem(x)
        for unit in self.layers:
            h = unit(h)
        return self.forward_head(self.forward_penultimate(h))

    # --- what generalises the unit description from images to tokens ---------------------
    @staticmethod
    def example_input(input_size: Sequence[int], device: torch.device | str = "cpu") -> Tensor:
        """One sequence of ``input_size = (T,)`` token ids (zeros), for shapes and cost."""
        (seq_len,) = input_size
        return torch.zeros(1, int(seq_len), dtype=torch.long, device=device)

    @staticmethod
    def inputs_per_example(input_size: Sequence[int]) -> int:
        """Tokens in one example: costs are reported per token."""
        return int(input_size[0])

    @staticmethod
    def sample_rows(features: Tensor) -> Tensor:
        """(B, T, D) features as (B*T, D): every token is a sample for CKA and cosines."""
        return features.reshape(-1, features.shape[-1])

    def spec(self) -> dict:
        """The architecture as plain data: the Hugging Face config (with the current layer count)."""
        return {
            "arch": "causal_lm",
            "model_type": self.config.model_type,
            "blocks_per_stage": self.blocks_per_stage,
            "hf_config": self.config.to_dict(),
            "source": self.source,
        }

    # The weights are the Hugging Face model's (the units hold the same layers a second time):
    # checkpoints store and load exactly what save_pretrained would.
    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self.lm.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        return self.lm.load_state_dict(state_dict, strict=strict, assign=assign)

    def generate(self, *args: Any, **kwargs: Any) -> Tensor:
        """The Hugging Face model's ``generate`` (KV cache by default)."""
        return self.lm.generate(*args, **kwargs)


def build_causal_lm(spec: dict) -> CausalLM:
    """A :class:`CausalLM` with random weights from the plain-data ``spec`` of :meth:`CausalLM.spec`."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = dict(spec["hf_config"])
    model_type = config.pop("model_type", spec["model_type"])
    hf_config = AutoConfig.for_model(model_type, **config)
    lm = AutoModelForCausalLM.from_config(hf_config, attn_implementation="eager")
    lm.eval()
    return CausalLM(lm, source=spec.get("source"))


def baseline_language_model(model_cfg: dict, data_cfg: dict) -> tuple[CausalLM, dict]:
    """The baseline of ``model.family: causal_lm`` and its checkpoint ``preprocessing``.

    Loads ``model.path`` (local unless ``model.download``), or imports ``model.llama2c_checkpoint``
    with the sentencepiece tokenizer ``data.tokenizer``.
    """
    import tempfile

    if model_cfg["llama2c_checkpoint"]:
        from layerprune.lm.llama2c import import_llama2c

        with tempfile.TemporaryDirectory() as tmp:
            path = import_llama2c(model_cfg["llama2c_checkpoint"], data_cfg["tokenizer"], Path(tmp) / "model")
            model = load_causal_lm(path)
        model.source = str(model_cfg["llama2c_checkpoint"])
    else:
        model = load_causal_lm(model_cfg["path"], download=model_cfg["download"])
    preprocessing = {
        "dataset": "text",
        "input_size": [data_cfg["seq_len"]],
        "tokenizer": str(data_cfg["tokenizer"]),
        "num_classes": model.config.vocab_size,
        "mean": [],  # token inputs: no normalisation
        "std": [],
    }
    return model, preprocessing


def load_causal_lm(path: str | os.PathLike, *, download: bool = False, dtype: torch.dtype | None = None) -> CausalLM:
    """Loads a causal LM directory (``save_pretrained`` layout) as a :class:`CausalLM`.

    Args:
        path: a local model directory, or a hub name when ``download`` is true.
        download: allow fetching from the Hugging Face hub (off: only local files).
        dtype: weights' dtype (default: as saved).

    Raises:
        FileNotFoundError: ``path`` is not a directory and downloading is off.
    """
    from transformers import AutoModelForCausalLM

    if not download and not Path(path).is_dir():
        raise FileNotFoundError(
            f"{path} is not a model directory (config.json + weights); give a local directory, e.g. one written "
            "by `layerprune import-llama2c`, or set model.download: true to fetch a hub model"
        )
    lm = AutoModelForCausalLM.from_pretrained(
        path, local_files_only=not download, attn_implementation="eager", dtype=dtype
    )
    lm.eval()
    return CausalLM(lm, source=str(path))


def save_causal_lm(model: CausalLM, out: str | os.PathLike, *, tokenizer: str | os.PathLike) -> Path:
    """Writes ``model`` with ``save_pretrained`` (safetensors) beside its tokenizer, atomically.

    Args:
        tokenizer: a tokenizer directory (e.g. the original model directory) or a sentencepiece ``.model``.
    """
    from layerprune.io import atomic_dir
    from layerprune.lm.text import load_tokenizer

    with atomic_dir(out) as tmp:
        model.lm.save_pretrained(tmp, safe_serialization=True)
        load_tokenizer(tokenizer).save_pretrained(tmp)
    return Path(out)
