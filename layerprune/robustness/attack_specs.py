"""The registry of adversarial attacks and the validation of their configs, importable without torch.

The config check (``layerprune.config.check_robustness``) runs when the workflow starts, before any job, so this
module imports only the standard library; foolbox (and with it torch) is imported when an attack is built. The
attacks themselves are described in :mod:`layerprune.robustness.adversarial`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

__all__ = ["ATTACKS", "CONFIG_KEYS", "AttackSpec", "attack_norm", "attack_params", "validate_attack_configs"]


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

CONFIG_KEYS = {"name", "epsilons", "params", "max_samples"}


def attack_norm(name: str) -> str:
    """Norm (``"linf"`` or ``"l2"``) in which the epsilons of attack ``name`` are measured."""
    return _spec(name).norm


def attack_params(name: str) -> list[str]:
    """Names of the ``params`` attack ``name`` takes (the keyword arguments of its builder), sorted."""
    return sorted(inspect.signature(_spec(name).build).parameters)


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
            raise TypeError(f"attack config {cfg!r} must be a dict with keys {sorted(CONFIG_KEYS)}")
        unknown = set(cfg) - CONFIG_KEYS
        if unknown:
            raise ValueError(
                f"attack config {dict(cfg)!r} has unknown keys {sorted(unknown)}; allowed keys are "
                f"{sorted(CONFIG_KEYS)}"
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
        allowed = attack_params(name)  # type: ignore[arg-type]
        bad = set(params) - set(allowed)
        if bad:
            raise ValueError(f"attack {name!r} got unknown params {sorted(bad)}; allowed: {allowed}")
        max_samples = cfg.get("max_samples", spec.default_max_samples)
        if max_samples is not None and (
            isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1
        ):
            raise ValueError(f"attack {name!r} max_samples must be a positive int or null, got {max_samples!r}")
        out.append({"name": name, "epsilons": eps_f, "params": params, "max_samples": max_samples})
    return out
