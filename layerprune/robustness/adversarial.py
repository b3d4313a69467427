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

import inspect
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch

from layerprune.robustness._common import check_normalisation

logger = logging.getLogger(__name__)

__all__ = ["ATTACKS", "AttackSpec", "attack_norm", "run_attacks", "validate_attack_configs"]


class AttackSpec(NamedTuple):
    """A registered attack: the norm its epsilons are measured in and a builder ``(**params) -> foolbox attack``."""

    norm: str
    build: Callable[..., Any]
    default_max_samples: int | None = None


def _fb() -> Any:
    """Import foolbox lazily: it is slow to import and warns about scipy on import."""
    import foolbox

    return foolbox


def _build_fgsm(*, random_start: bool = False) -> Any:
    return _fb().attacks.LinfFastGradientAttack(random_start=random_start)


def _build_pgd(
    *, steps: int = 40, rel_stepsize: float | None = None, abs_stepsize: float | None = None, random_start: bool = True
) -> Any:
    if steps < 1:
        raise ValueError(f"pgd steps must be >= 1, got {steps!r}")
    rel = 2.5 / steps if rel_stepsize is None else rel_stepsize
    if abs_stepsize is None and rel * steps < 1.0:
        raise ValueError(
            f"pgd with steps={steps} and rel_stepsize={rel} moves at most {rel * steps:.2f} epsilon "
            "in total and cannot reach the epsilon-ball boundary; use rel_stepsize >= 1/steps "
            "(default 2.5/steps)"
        )
    return _fb().attacks.LinfPGD(steps=steps, rel_stepsize=rel, abs_stepsize=abs_stepsize, random_start=random_start)


def _build_deepfool(
    *, steps: int = 50, candidates: int | None = 10, overshoot: float = 0.02, loss: str = "logits"
) -> Any:
    return _fb().attacks.L2DeepFoolAttack(steps=steps, candidates=candidates, overshoot=overshoot, loss=loss)


def _build_cw(
    *,
    binary_search_steps: int = 5,
    steps: int = 100,
    stepsize: float = 0.01,
    confidence: float = 0.0,
    initial_const: float = 1e-3,
    abort_early: bool = True,
) -> Any:
    return _fb().attacks.L2CarliniWagnerAttack(
        binary_search_steps=binary_search_steps,
        steps=steps,
        stepsize=stepsize,
        confidence=confidence,
        initial_const=initial_const,
        abort_early=abort_early,
    )


#: Attack name -> (norm, builder, default max_samples). Builders take the attack's ``params`` as keywords.
ATTACKS: dict[str, AttackSpec] = {
    "fgsm": AttackSpec("linf", _build_fgsm),
    "pgd": AttackSpec("linf", _build_pgd),
    "deepfool": AttackSpec("l2", _build_deepfool),
    "cw": AttackSpec("l2", _build_cw, default_max_samples=100),
}

_CONFIG_KEYS = {"name", "epsilons", "params", "max_samples"}


def attack_norm(name: str) -> str:
    """Norm (``"linf"`` or ``"l2"``) in which the epsilons of attack ``name`` are measured."""
    return _spec(name).norm


def _spec(name: str) -> AttackSpec:
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; expected one of {sorted(ATTACKS)}")
    return ATTACKS[name]


def validate_attack_configs(attacks: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Check attack configs before any work and return them normalised.

    Args:
        attacks: each ``{"name": str, "epsilons": [float, ...], "params": {...} (optional),
            "max_samples": int | None (optional)}``.

    Returns:
        Copies with ``params`` filled (``{}``), ``max_samples`` resolved (the attack's default when absent) and
        ``epsilons`` sorted, deduplicated floats.

    Raises:
        ValueError: unknown attack, key or parameter; missing, negative or non-finite epsilons; bad ``max_samples``.
        TypeError: a config that is not a dict.
    """
    if isinstance(attacks, Mapping) or not isinstance(attacks, Sequence) or not attacks:
        raise ValueError(
            f"attacks must be a non-empty list of dicts like {{'name': 'fgsm', 'epsilons': [0, 0.03]}}, got {attacks!r}"
        )
    out = []
    for cfg in attacks:
        if not isinstance(cfg, Mapping):
            raise TypeError(f"attack config {cfg!r} must be a dict with keys {sorted(_CONFIG_KEYS)}")
        unknown = set(cfg) - _CONFIG_KEYS
        if unknown:
            raise ValueError(
                f"attack config {dict(cfg)!r} has unknown keys {sorted(unknown)}; allowed keys are "
                f"{sorted(_CONFIG_KEYS)}"
            )
        name = cfg.get("name")
        spec = _spec(name)  # type: ignore[arg-type]
        eps = cfg.get("epsilons")
        if not isinstance(eps, Sequence) or isinstance(eps, str) or len(eps) == 0:
            raise ValueError(f"attack {name!r} needs a non-empty list 'epsilons', got {eps!r}")
        eps_f = sorted({float(e) for e in eps})
        if any(not math.isfinite(e) or e < 0 for e in eps_f):
            raise ValueError(
                f"attack {name!r} epsilons {list(eps)} must be finite and >= 0 (in [0, 1] pixel units, e.g. 8/255)"
            )
        params = dict(cfg.get("params") or {})
        allowed = set(inspect.signature(spec.build).parameters)
        bad = set(params) - allowed
        if bad:
            raise ValueError(f"attack {name!r} got unknown params {sorted(bad)}; allowed: {sorted(allowed)}")
        max_samples = cfg.get("max_samples", spec.default_max_samples)
        if max_samples is not None and (
            isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1
        ):
            raise ValueError(f"attack {name!r} max_samples must be a positive int or null, got {max_samples!r}")
        out.append({"name": name, "epsilons": eps_f, "params": params, "max_samples": max_samples})
    return out


def _perturbation_norms(adv: torch.Tensor, x: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-image norm ``(n,)`` of ``adv - x`` for images ``(n, C, H, W)``."""
    delta = (adv - x).flatten(1)
    return delta.abs().amax(dim=1) if norm == "linf" else delta.norm(p=2, dim=1)


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
) -> pd.DataFrame:
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

    Returns:
        Tidy DataFrame, one row per (attack, epsilon): ``attack, norm, epsilon, robust_accuracy, n,
        max_perturbation`` (the largest norm of any returned perturbation at that epsilon; <= epsilon).

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
    fork_devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(seed)
            for cfg in configs:
                rows.extend(_run_one(fmodel, images, labels, cfg, batch_size, device))
    finally:
        model.train(was_training)
    return pd.DataFrame(rows, columns=["attack", "norm", "epsilon", "robust_accuracy", "n", "max_perturbation"])


def _run_one(
    fmodel: Any, images: torch.Tensor, labels: torch.Tensor, cfg: dict[str, Any], batch_size: int, device: torch.device
) -> list[dict[str, Any]]:
    """Run one attack config over all batches; rows for each epsilon."""
    name, eps = cfg["name"], cfg["epsilons"]
    spec = ATTACKS[name]
    attack = spec.build(**cfg["params"])
    n = images.shape[0] if cfg["max_samples"] is None else min(cfg["max_samples"], images.shape[0])
    robust = np.zeros(len(eps), dtype=np.int64)
    max_pert = np.zeros(len(eps))
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
        logger.info("attack %s: batch %d-%d done", name, start, start + x.shape[0])
    rows = []
    for k, e in enumerate(eps):
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
