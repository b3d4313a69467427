"""Adversarial robustness of a (pruned) classifier with foolbox 3 (Rauber et al., https://github.com/bethgelab/foolbox).

Attacks run on images in [0, 1]; the model's input normalisation is passed to foolbox as preprocessing, so epsilons
are in pixel units of [0, 1] images (8/255 means 8 grey levels) whatever the model's normalisation, and the
perturbations are clipped to the valid image range by foolbox.

Attacks, by name (``ATTACKS``):

- ``fgsm``: L-inf fast gradient sign method (Goodfellow et al., 2015), one step of size epsilon.
- ``pgd``: L-inf projected gradient descent with a random start (Madry et al., 2018). foolbox's step size is
  ``rel_stepsize * epsilon``; the default ``steps = 40`` with ``rel_stepsize = 2.5 / steps`` lets the iterate cross the
  epsilon ball 2.5 times (the "2.5 epsilon / steps" rule of Madry et al.), enough to reach its boundary from any random
  start. Passing ``steps`` alone rescales ``rel_stepsize`` the same way.
- ``deepfool``: L2 DeepFool (Moosavi-Dezfooli et al., 2016), a minimal-perturbation attack; its perturbation is
  clipped to each epsilon.
- ``cw``: L2 Carlini-Wagner (2017). Defaults are CPU-sized (5 binary-search steps of 100 Adam steps, not 9 x 10,000),
  and by default it runs on the first 100 images only (``max_samples``).

Robust accuracy at epsilon is the fraction of images that are correctly classified and for which the attack found no
adversarial within the epsilon ball. An adversarial found at a smaller epsilon also lies inside every larger ball, so
success is accumulated over the (sorted) epsilons: robust accuracy is non-increasing in epsilon, an upper bound on
the true robust accuracy that is at least as tight as each single run. At epsilon 0 it equals the clean accuracy.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal, overload

import numpy as np
import pandas as pd
import torch

from layerprune.robustness._common import check_normalisation
from layerprune.robustness.attack_specs import (
    ATTACKS,
    AttackSpec,
    _fb,
    attack_norm,
    validate_attack_configs,
)

logger = logging.getLogger(__name__)

__all__ = ["ATTACKS", "Adversarials", "AttackSpec", "attack_norm", "run_attacks", "validate_attack_configs"]


def _perturbation_norms(adv: torch.Tensor, x: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-image norm ``(n,)`` of ``adv - x`` for images ``(n, C, H, W)``."""
    delta = (adv - x).flatten(1)
    return delta.abs().amax(dim=1) if norm == "linf" else delta.norm(p=2, dim=1)


#: ``(attack, epsilon)`` -> the adversarial images ``(n, C, H, W)`` (on the CPU) of the attacked images.
Adversarials = dict[tuple[str, float], torch.Tensor]


@overload
def run_attacks(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    attacks: Sequence[Mapping[str, Any]],
    batch_size: int = ...,
    device: str | torch.device = ...,
    seed: int = ...,
    return_adversarials: Literal[False] = ...,
) -> pd.DataFrame: ...


@overload
def run_attacks(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    attacks: Sequence[Mapping[str, Any]],
    batch_size: int = ...,
    device: str | torch.device = ...,
    seed: int = ...,
    return_adversarials: Literal[True],
) -> tuple[pd.DataFrame, Adversarials]: ...


def run_attacks(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    attacks: Sequence[Mapping[str, Any]],
    batch_size: int = 128,
    device: str | torch.device = "cpu",
    seed: int = 0,
    return_adversarials: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, Adversarials]:
    """Robust accuracy of ``model`` under each attack at each epsilon.

    Each attack is called once per batch with all its epsilons (foolbox evaluates every epsilon), and results are
    accumulated over batches. Every returned perturbation is checked against its norm bound and the [0, 1] range.

    Args:
        model: classifier taking *normalised* ``(n, C, H, W)`` inputs and returning logits ``(n, num_classes)``.
            It is moved to ``device`` and put in eval mode (its previous mode is restored afterwards).
        images: ``(N, C, H, W)`` float images in [0, 1], *not* normalised (``build_dataset(..., normalize=False)``).
        labels: ``(N,)`` integer labels.
        mean: per-channel normalisation mean of the model (for [0, 1] pixels), from the checkpoint's preprocessing.
        std: per-channel normalisation std, same length as ``mean``.
        attacks: configs ``{"name", "epsilons", "params"?, "max_samples"?}``, see ``validate_attack_configs``.
            ``max_samples`` evaluates the attack on the first ``max_samples`` images only.
        batch_size: images per attack call.
        device: where the model and the attack run.
        seed: seeds torch's RNG (PGD random starts) inside a forked RNG state, so results are reproducible and the
            caller's RNG is left untouched.
        return_adversarials: also return the adversarial images, to inspect or check them independently.

    Returns:
        Tidy DataFrame, one row per (attack, epsilon): ``attack, norm, epsilon, robust_accuracy, n,
        max_perturbation`` (the largest norm of any returned perturbation at that epsilon; <= epsilon). With
        ``return_adversarials``, a pair of it and the adversarial images of the first ``n`` images per
        ``(attack, epsilon)`` (foolbox's clipped adversarials; an image the attack failed on is its closest try).

    Raises:
        ValueError: missing/mis-sized normalisation, images outside [0, 1] or of the wrong shape, bad attack configs.
        RuntimeError: a perturbation exceeds its norm bound or the image range (a foolbox or model bug).
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError(
            f"images must be a float tensor (N, C, H, W), got "
            f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}"
        )
    mean_l, std_l = check_normalisation(mean, std, images.shape[1])
    images = images.detach().float()
    lo, hi = float(images.min()), float(images.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(
            f"images range [{lo:.3f}, {hi:.3f}] is outside [0, 1]; pass unnormalised images "
            "(build_dataset(..., normalize=False)): the normalisation is applied inside the attack"
        )
    if images.shape[0] == 0:
        raise ValueError("images is empty; pass at least one image")
    labels = torch.as_tensor(labels).long().reshape(-1)
    if labels.numel() != images.shape[0]:
        raise ValueError(f"got {labels.numel()} labels for {images.shape[0]} images; pass one label per image")
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    configs = validate_attack_configs(attacks)
    fb = _fb()
    device = torch.device(device)
    was_training = model.training
    model.to(device).eval()
    fmodel = fb.PyTorchModel(
        model, bounds=(0, 1), device=device, preprocessing={"mean": mean_l, "std": std_l, "axis": -3}
    )
    rows: list[dict[str, Any]] = []
    adversarials: Adversarials = {}
    fork_devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(seed)
            for cfg in configs:
                rows.extend(_run_one(fmodel, images, labels, cfg, batch_size, device, adversarials))
    finally:
        model.train(was_training)
    table = pd.DataFrame(rows, columns=["attack", "norm", "epsilon", "robust_accuracy", "n", "max_perturbation"])
    return (table, adversarials) if return_adversarials else table


def _run_one(
    fmodel: Any,
    images: torch.Tensor,
    labels: torch.Tensor,
    cfg: dict[str, Any],
    batch_size: int,
    device: torch.device,
    adversarials: Adversarials,
) -> list[dict[str, Any]]:
    """Run one attack config over all batches; rows for each epsilon. Adds its adversarial images to
    ``adversarials``."""
    name, eps = cfg["name"], cfg["epsilons"]
    spec = ATTACKS[name]
    attack = spec.build(**cfg["params"])
    n = images.shape[0] if cfg["max_samples"] is None else min(cfg["max_samples"], images.shape[0])
    robust = np.zeros(len(eps), dtype=np.int64)
    max_pert = np.zeros(len(eps))
    batches: list[list[torch.Tensor]] = [[] for _ in eps]
    # tolerance for float round-off in foolbox's projection (relative for L2 rescaling, absolute for clipping)
    for start in range(0, n, batch_size):
        x = images[start : min(start + batch_size, n)].to(device)
        y = labels[start : min(start + batch_size, n)].to(device)
        _, clipped, success = attack(fmodel, x, y, epsilons=eps)
        success = success.bool().cpu()  # (len(eps), b)
        # adversarials found at a smaller epsilon lie inside every larger ball
        success = torch.cummax(success.int(), dim=0).values.bool()
        robust += (~success).sum(dim=1).numpy()
        for k, (e, adv) in enumerate(zip(eps, clipped, strict=True)):
            adv = adv.detach()
            if float(adv.min()) < -1e-6 or float(adv.max()) > 1 + 1e-6:
                raise RuntimeError(
                    f"attack {name!r} at epsilon {e} returned images outside [0, 1] "
                    f"(range [{float(adv.min()):.4g}, {float(adv.max()):.4g}])"
                )
            norms = _perturbation_norms(adv, x, spec.norm)
            worst = float(norms.max()) if norms.numel() else 0.0
            if worst > e * (1 + 1e-4) + 1e-6:
                raise RuntimeError(
                    f"attack {name!r} returned a perturbation of {spec.norm} norm {worst:.6g} above "
                    f"its bound epsilon={e}; the clipped adversarials should respect the bound"
                )
            max_pert[k] = max(max_pert[k], worst)
            batches[k].append(adv.cpu())
        logger.info("attack %s: batch %d-%d done", name, start, start + x.shape[0])
    rows = []
    for k, e in enumerate(eps):
        adversarials[(name, e)] = torch.cat(batches[k])
        acc = robust[k] / n
        logger.info("attack %s (%s) epsilon %.5g: robust accuracy %.4f (n=%d)", name, spec.norm, e, acc, n)
        rows.append(
            {
                "attack": name,
                "norm": spec.norm,
                "epsilon": e,
                "robust_accuracy": float(acc),
                "n": int(n),
                "max_perturbation": max_pert[k],
            }
        )
    return rows
