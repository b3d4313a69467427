"""Evaluation of a causal language model: perplexity in and out of domain, next-token top-1, cost."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import torch

from layerprune.lm.model import CausalLM
from layerprune.lm.text import perplexity, tokenize_file
from layerprune.models import count_macs, count_params
from layerprune.models.units import bypass, unit_names

__all__ = ["drop_one_layer", "evaluate_language_model"]

log = logging.getLogger(__name__)


def evaluate_language_model(
    model: CausalLM,
    data_cfg: dict,
    *,
    batch_size: int = 8,
    device: torch.device | str = "cpu",
    emissions_csv: Path | None = None,
    country_iso_code: str = "USA",
    phase: str = "inference",
) -> dict:
    """The metrics record of a causal LM (the keys of ``metrics.json``).

    ``top1`` and ``loss`` are the next-token accuracy and mean NLL on ``data.test_text`` (so the
    summary's columns keep their meaning of "accuracy" and "loss"); ``perplexity`` is exp(loss);
    ``ood_perplexity`` is on ``data.ood_text`` (NaN without one); ``macs`` are per token at
    ``data.seq_len``; ``latency_ms`` is the time per window of ``seq_len`` tokens in the
    in-domain pass (``latency_batch_size`` windows at a time), ``tokens_per_s`` its throughput.
    The in-domain pass is the one tracked with CodeCarbon.
    """
    seq_len, stride, limit = data_cfg["seq_len"], data_cfg["stride"], data_cfg["max_eval_tokens"]
    tokens = tokenize_file(data_cfg["test_text"], data_cfg["tokenizer"], max_tokens=limit)
    from layerprune.evaluation import tracked_inference

    with tracked_inference(phase, emissions_csv, country_iso_code, len(tokens)):
        result = perplexity(model, tokens, seq_len=seq_len, stride=stride, batch_size=batch_size, device=device)
    ood = None
    if data_cfg["ood_text"]:
        ood_tokens = tokenize_file(data_cfg["ood_text"], data_cfg["tokenizer"], max_tokens=limit)
        ood = perplexity(model, ood_tokens, seq_len=seq_len, stride=stride, batch_size=batch_size, device=device)
    macs, _ = count_macs(model.cpu(), [seq_len])
    metrics = {
        "top1": result.accuracy,
        "loss": result.nll,
        "perplexity": result.perplexity,
        "ood_perplexity": ood.perplexity if ood else float("nan"),
        "ood_loss": ood.nll if ood else float("nan"),
        "n_test": result.tokens,
        "n_ood": ood.tokens if ood else 0,
        "params": count_params(model),
        "macs": macs,
        "macs_unit": f"per token at seq_len {seq_len}",
        "blocks_per_stage": list(model.blocks_per_stage),
        "latency_ms": 1000.0 * seq_len / result.tokens_per_s,
        "latency_batch_size": batch_size,
        "latency_device": str(device),
        "tokens_per_s": result.tokens_per_s,
        "seq_len": seq_len,
        "stride": stride,
        "tokenizer": "Hugging Face tokenizer of data.tokenizer, BOS before each document",
    }
    log.info("perplexity %.4f in-domain, %.4f out-of-domain", metrics["perplexity"], metrics["ood_perplexity"])
    return metrics


def drop_one_layer(
    model: CausalLM, data_cfg: dict, *, batch_size: int = 8, device: torch.device | str = "cpu"
) -> pd.DataFrame:
    """Perplexity with each single decoder layer removed: ``unit, position, perplexity, ood_perplexity, top1``.

    The first row (``unit`` = ``none``, position -1) is the intact model. A layer is bypassed in place,
    which computes exactly what the model with that layer removed computes (tested), without copying
    the model once per layer. Out-of-domain columns are NaN without ``data.ood_text``.
    """
    seq_len, stride, limit = data_cfg["seq_len"], data_cfg["stride"], data_cfg["max_eval_tokens"]
    texts = {"": tokenize_file(data_cfg["test_text"], data_cfg["tokenizer"], max_tokens=limit)}
    if data_cfg["ood_text"]:
        texts["ood_"] = tokenize_file(data_cfg["ood_text"], data_cfg["tokenizer"], max_tokens=limit)
    rows = []
    for position, unit in enumerate(["none", *unit_names(model)], start=-1):
        row: dict = {"unit": unit, "position": position, "ood_perplexity": float("nan")}
        with bypass(model, [] if unit == "none" else [unit]):
            for prefix, tokens in texts.items():
                result = perplexity(model, tokens, seq_len=seq_len, stride=stride, batch_size=batch_size, device=device)
                row[f"{prefix}perplexity"] = result.perplexity
                if not prefix:
                    row["top1"] = result.accuracy
        log.info("without %s: perplexity %.4f", unit, row["perplexity"])
        rows.append(row)
    return pd.DataFrame(rows, columns=["unit", "position", "perplexity", "ood_perplexity", "top1"])
