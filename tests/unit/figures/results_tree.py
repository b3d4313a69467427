"""A small, internally consistent result tree as the workflow lays it out, for summary and figure tests.

Model: 3 stages x 3 units, each unit 1,000 MACs and 100 parameters; stem and head 1,000 MACs and 100 parameters,
so the baseline has 10,000 MACs and 1,000 parameters. ``blocks2`` removes 2 units (20% MACs and params),
``macs40`` removes 4 units (40%). Accuracies are chosen per (method, budget, seed) so tests can recompute them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

UNITS = [f"layer{s}.{i}" for s in (1, 2, 3) for i in range(3)]
METHODS = ("cka", "sglp")
BUDGETS = ("blocks2", "macs40")
N_REMOVED = {"blocks2": 2, "macs40": 4}
BASE_TOP1 = 0.90
EMISSIONS_HEADER = (
    "phase,duration_s,energy_kwh,co2_kg,cpu_energy_kwh,gpu_energy_kwh,ram_energy_kwh,cpu_power_source,"
    "gpu_power_source,ram_power_source,country_iso_code,measured,tracking_mode,codecarbon_version\n"
)
CPU_SOURCE = "estimated (CodeCarbon TDP x CPU load)"
ATTACKS = (("fgsm", "linf", (0.0, 0.01, 0.03)), ("deepfool", "l2", (0.0, 0.25, 0.5)))
CORRUPTIONS = (("gaussian_noise", "noise"), ("defocus_blur", "blur"), ("fog", "weather"), ("contrast", "digital"))


def pruned_top1(method: str, budget: str, seed: int) -> float:
    return BASE_TOP1 - 0.01 * N_REMOVED[budget] - (0.005 if method == "sglp" else 0.0) - 0.001 * seed


def finetuned_top1(method: str, budget: str, seed: int) -> float:
    return pruned_top1(method, budget, seed) + 0.015


def removed_units(method: str, budget: str) -> list[str]:
    n = N_REMOVED[budget]
    if method == "cka":  # the last removable units
        return [u for u in UNITS if not u.endswith(".0")][-n:]
    return [u for u in UNITS if not u.endswith(".0")][:n]


def latency_ms(method: str, budget: str) -> tuple[float, float, float]:
    """(q1, median, q3) per batch of a final model; SGLP at blocks2 overlaps the baseline's range on purpose."""
    if method == "baseline":
        return 1.9, 2.0, 2.1
    if (method, budget) == ("sglp", "blocks2"):
        return 1.85, 1.95, 2.05
    median = 2.0 - 0.2 * N_REMOVED[budget]
    return median - 0.05, median, median + 0.05


def energy_j(method: str, budget: str) -> tuple[float, float, float]:
    """(q1, median, q3) inference energy per image, following latency (as an estimated CPU power does)."""
    return tuple(1e-3 * v / 2.0 for v in latency_ms(method, budget))  # type: ignore[return-value]


def adv_accuracy(model_drop: float, eps: float, attack: str) -> float:
    return max(0.0, 0.9 - model_drop - (8.0 if attack == "fgsm" else 1.0) * eps)


def corruption_accuracy(model_drop: float, corruption: str, severity: int) -> float:
    hard = 0.05 if corruption == "fog" else 0.03
    return 0.85 - model_drop - hard * severity


@dataclass
class Tree:
    root: Path
    baseline: dict[str, Path] = field(default_factory=dict)
    runs: list[dict] = field(default_factory=list)  # RunFiles-shaped dicts
    cka: Path | None = None
    segments: Path | None = None
    scores: list[Path] = field(default_factory=list)
    adversarial: list[Path] = field(default_factory=list)  # baseline's included
    corruptions: list[Path] = field(default_factory=list)
    latency: Path | None = None


def _json(path: Path, obj: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def _csv(path: Path, frame: pd.DataFrame) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def _emissions(path: Path, energy: float | None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = EMISSIONS_HEADER
    if energy is not None:
        text += f"phase,1.0,{energy},{energy * 0.4},{energy * 0.7},0.0,{energy * 0.3},{CPU_SOURCE},,constant,USA,False,offline,3.3.2\n"
    path.write_text(text)
    return path


def _metrics(n_removed: int, top1: float, bps: list[int]) -> dict:
    return {
        "top1": top1,
        "loss": 1.0 - top1,
        "n_test": 500,
        "params": 1000 - 100 * n_removed,
        "macs": 10000 - 1000 * n_removed,
        "blocks_per_stage": bps,
        "latency_ms": 2.0 - 0.2 * n_removed,
        "latency_batch_size": 64,
        "latency_device": "cpu",
        "model": "model.pt",
    }


def _robustness(tree: Tree, folder: Path, drop: float) -> None:
    adv = [
        {"attack": a, "norm": norm, "epsilon": e, "robust_accuracy": adv_accuracy(drop, e, a), "n": 100}
        for a, norm, eps in ATTACKS
        for e in eps
    ]
    corr = [
        {"corruption": c, "group": g, "severity": s, "accuracy": corruption_accuracy(drop, c, s), "n": 100}
        for c, g in CORRUPTIONS
        for s in (1, 3, 5)
    ]
    tree.adversarial.append(_csv(folder / "adversarial.csv", pd.DataFrame(adv)))
    tree.corruptions.append(_csv(folder / "corruptions.csv", pd.DataFrame(corr)))


def make_tree(
    root: Path,
    *,
    seeds: tuple[int, ...] = (0,),
    robustness: bool = True,
    finetune: bool = True,
    tracked: bool = True,
) -> Tree:
    """Writes ``root/results/exp/...`` and returns the paths. ``tracked=False`` writes header-only emissions."""
    exp = root / "results" / "exp"
    tree = Tree(root=exp)
    energy = (lambda v: v) if tracked else (lambda v: None)
    tree.baseline = {
        "metrics": _json(exp / "baseline/metrics.json", _metrics(0, BASE_TOP1, [3, 3, 3])),
        "train_emissions": _emissions(exp / "baseline/emissions_train.csv", energy(0.5)),
        "inference_emissions": _emissions(exp / "baseline/emissions_inference.csv", energy(0.01)),
    }
    names = ["stem", *UNITS]
    cka = [
        {
            "unit_a": a,
            "unit_b": b,
            "cka": 1.0 if a == b else 1.0 / (1.0 + abs(i - j)) + (0.3 if (i - 1) // 3 == (j - 1) // 3 else 0.0),
        }
        for i, a in enumerate(names)
        for j, b in enumerate(names)
    ]
    tree.cka = _csv(exp / "similarity/unit_cka.csv", pd.DataFrame(cka).assign(cka=lambda f: f["cka"].clip(0, 1)))
    tree.segments = _json(
        exp / "segments/segments.json", {"units": UNITS, "segments": [[0, 3], [3, 6], [6, 9]], "k": 3}
    )
    if robustness:
        _robustness(tree, exp / "robustness/baseline", 0.0)
    timed = [("baseline", "baseline", "none", None)]
    final = "finetuned" if finetune else "pruned"
    timed += [(f"{final}/{m}/{b}/seed{s}", m, b, s) for m in METHODS for b in BUDGETS for s in seeds]
    latency_rows = []
    for label, method, budget, seed in timed:
        q1, med, q3 = latency_ms(method, budget)
        e1, em, e3 = energy_j(method, budget)
        latency_rows.append(
            {
                "model": label,
                "method": method,
                "budget": budget,
                "seed": seed,
                "stage": "baseline" if method == "baseline" else final,
                "latency_ms": med,
                "latency_q1_ms": q1,
                "latency_q3_ms": q3,
                "threads": 1,
                "batch_size": 64,
                "energy_j_per_image": em,
                "energy_q1_j_per_image": e1,
                "energy_q3_j_per_image": e3,
                "latency_passes": 60,
                "energy_seconds": 1.0,
                "energy_windows": 3,
            }
        )
    tree.latency = _csv(exp / "latency/latency.csv", pd.DataFrame(latency_rows))
    for method in METHODS:
        for budget in BUDGETS:
            for seed in seeds:
                run = f"{method}/{budget}/seed{seed}"
                removed = removed_units(method, budget)
                bps = [3 - sum(u.startswith(f"layer{s}.") for u in removed) for s in (1, 2, 3)]
                n = len(removed)
                pdir, fdir = exp / "pruned" / run, exp / "finetuned" / run
                entry = {"method": method, "budget": budget, "seed": seed}
                entry["pruned_metrics"] = _json(
                    pdir / "metrics.json", _metrics(n, pruned_top1(method, budget, seed), bps)
                )
                entry["plan"] = _json(
                    pdir / "plan.json",
                    {
                        "removed": removed,
                        "n_removed": n,
                        "removed_macs": 1000 * n,
                        "remaining_macs": 10000 - 1000 * n,
                        "macs_reduction": n / 10,
                        "params_reduction": n / 10,
                        "blocks_per_stage_after": bps,
                    },
                )
                scores = [
                    {
                        "unit": u,
                        "stage": int(u[5]) - 1,
                        "score": 1.0 - 0.1 * k if method == "cka" else 0.1 * k,
                        "rank": k,
                        "removed": u in removed,
                    }
                    for k, u in enumerate(UNITS)
                ]
                tree.scores.append(_csv(pdir / "scores.csv", pd.DataFrame(scores)))
                if finetune:
                    entry["finetuned_metrics"] = _json(
                        fdir / "metrics.json", _metrics(n, finetuned_top1(method, budget, seed), bps)
                    )
                    entry["finetune_emissions"] = _emissions(fdir / "emissions_finetune.csv", energy(0.05 * n))
                    entry["inference_emissions"] = _emissions(
                        fdir / "emissions_inference.csv", energy(0.01 * (1 - n / 10))
                    )
                if robustness:
                    final = finetuned_top1(method, budget, seed) if finetune else pruned_top1(method, budget, seed)
                    _robustness(tree, exp / "robustness" / run, BASE_TOP1 - final)
                    entry["adversarial"] = tree.adversarial[-1]
                    entry["corruptions"] = tree.corruptions[-1]
                tree.runs.append(entry)
    return tree


def assert_written(written, names, out_dir, formats=("png", "pdf")):
    """Each figure's files exist, are non-empty, and no temporary file is left behind."""
    assert set(written) == set(names)
    for name in names:
        assert [p.name for p in written[name]] == [f"{name}.{fmt}" for fmt in formats]
        for path in written[name]:
            assert path.parent == out_dir and path.is_file() and path.stat().st_size > 0, path
    assert not list(out_dir.glob(".*"))
