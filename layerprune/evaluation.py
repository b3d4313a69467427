"""Clean evaluation of one model: accuracy, cost and latency, as one flat metrics record."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from torch import nn

from layerprune.data import build_dataset
from layerprune.emissions import track
from layerprune.models import count_macs, count_params
from layerprune.train import evaluate, measure_latency, select_device

__all__ = ["evaluate_model", "tracked_inference"]

log = logging.getLogger(__name__)


def tracked_inference(phase: str, emissions_csv: Path | None, country_iso_code: str, n_samples: int) -> Any:
    """The CodeCarbon tracking of one inference pass over ``n_samples`` (a no-op without ``emissions_csv``)."""
    return track(
        phase,
        emissions_csv or Path("unused.csv"),
        country_iso_code=country_iso_code,
        enabled=emissions_csv is not None,
        extra={"n_samples": n_samples},
    )


def evaluate_model(
    model: nn.Module,
    preprocessing: dict,
    data_cfg: dict,
    *,
    batch_size: int = 256,
    latency_batch_size: int = 64,
    latency_repeats: int = 20,
    emissions_csv: Path | None = None,
    country_iso_code: str = "USA",
    num_workers: int = 0,
    phase: str = "inference",
) -> dict:
    """Top-1 on the test split, params, MACs and latency of ``model`` (for a causal language model,
    :func:`layerprune.lm.evaluation.evaluate_language_model`: perplexity and next-token top-1).

    When ``emissions_csv`` is given, the test-set inference pass is tracked with CodeCarbon
    (one row, phase ``phase``), so the energy of inference is comparable across models.
    """
    device = select_device("auto")
    input_size = preprocessing["input_size"]
    if getattr(model, "family", None) == "causal_lm":
        from layerprune.lm.evaluation import evaluate_language_model

        return evaluate_language_model(
            model, data_cfg, batch_size=batch_size, device=device, emissions_csv=emissions_csv,
            country_iso_code=country_iso_code, phase=phase,
        )  # fmt: skip
    test_set = build_dataset(data_cfg, "test")
    with tracked_inference(phase, emissions_csv, country_iso_code, len(test_set)):
        scores = evaluate(model, test_set, batch_size=batch_size, device=device, num_workers=num_workers)
    macs, _ = count_macs(model.cpu(), input_size)
    latency = measure_latency(model, input_size, batch_size=latency_batch_size, device=device, repeats=latency_repeats)
    metrics = {
        "top1": scores["top1"],
        "loss": scores["loss"],
        "n_test": int(scores["n"]),
        "params": count_params(model),
        "macs": macs,
        "blocks_per_stage": list(model.blocks_per_stage),
        "latency_ms": latency["median_ms"],
        "latency_batch_size": latency_batch_size,
        "latency_device": str(device),
    }
    log.info(
        "top-1 %.4f on %d test images, %d params, %d MACs", metrics["top1"], metrics["n_test"], metrics["params"], macs
    )
    return metrics
