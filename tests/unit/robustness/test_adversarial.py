"""Adversarial evaluation: epsilon 0 is clean accuracy, attacks hurt, bounds hold, configs are validated."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from layerprune.robustness import (
    ATTACKS,
    AttackSpec,
    attack_norm,
    run_attacks,
    validate_attack_configs,
)


def _run(setup, attacks, n=None, **kw):
    return run_attacks(
        setup.model,
        setup.images[:n],
        setup.labels[:n],
        mean=setup.mean,
        std=setup.std,
        attacks=attacks,
        batch_size=kw.pop("batch_size", 64),
        **kw,
    )


def test_registry_has_the_four_attacks_with_their_norms() -> None:
    assert {name: attack_norm(name) for name in ATTACKS} == {
        "fgsm": "linf",
        "pgd": "linf",
        "deepfool": "l2",
        "cw": "l2",
    }


def _norms(adv: torch.Tensor, x: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-image perturbation norms, computed here from the images (not by the code under test)."""
    delta = adv.double() - x.double()
    return delta.abs().amax(dim=(1, 2, 3)) if norm == "linf" else delta.pow(2).sum(dim=(1, 2, 3)).sqrt()


def _check_adversarials(setup, df, advs, n: int) -> None:
    """Every returned image is in [0, 1] and within its epsilon of the clean image, and the table's robust accuracy
    is what the model does on those images (robust at epsilon = still correct at every epsilon up to it)."""
    x, y = setup.images[:n], setup.labels[:n]
    m = torch.tensor(setup.mean).view(1, -1, 1, 1)
    s = torch.tensor(setup.std).view(1, -1, 1, 1)
    for attack, rows in df.groupby("attack"):
        rows = rows.sort_values("epsilon")
        still_correct = torch.ones(int(rows["n"].iloc[0]), dtype=torch.bool)
        for _, row in rows.iterrows():
            adv = advs[(attack, row["epsilon"])]
            k = int(row["n"])
            assert adv.shape == x[:k].shape, attack
            assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0, attack
            norms = _norms(adv, x[:k], row["norm"])
            assert float(norms.max()) <= row["epsilon"] * (1 + 1e-5) + 1e-6, (attack, row["epsilon"])
            assert float(norms.max()) == pytest.approx(row["max_perturbation"], abs=1e-5), (attack, row["epsilon"])
            with torch.no_grad():
                still_correct &= setup.model((adv - m) / s).argmax(1) == y[:k]
            assert row["robust_accuracy"] == pytest.approx(float(still_correct.float().mean()), abs=1.5 / k)


def test_fgsm_and_pgd_table_epsilon0_clean_monotone_and_bounded(digits_setup) -> None:
    eps = [0.0, 0.05, 0.1, 0.2, 0.3]
    df, advs = _run(
        digits_setup,
        [{"name": "fgsm", "epsilons": eps}, {"name": "pgd", "epsilons": eps, "params": {"steps": 10}}],
        n=200,
        return_adversarials=True,
    )
    assert list(df.columns) == ["attack", "norm", "epsilon", "robust_accuracy", "n", "max_perturbation"]
    assert len(df) == 10 and set(df["n"]) == {200}
    assert set(advs) == {(a, e) for a in ("fgsm", "pgd") for e in eps}
    _check_adversarials(digits_setup, df, advs, 200)
    clean = digits_setup.clean_accuracy(200)
    x = digits_setup.images[:200]
    for name, rows in df.groupby("attack"):
        rows = rows.sort_values("epsilon")
        assert rows["robust_accuracy"].iloc[0] == pytest.approx(clean), name
        assert np.all(np.diff(rows["robust_accuracy"].to_numpy()) <= 0), name
        # L-inf attacks use (nearly) all of the bound, measured on the images
        assert float(_norms(advs[(name, 0.3)], x, "linf").max()) > 0.9 * 0.3, name
    fgsm = df[df.attack == "fgsm"].set_index("epsilon")["robust_accuracy"]
    pgd = df[df.attack == "pgd"].set_index("epsilon")["robust_accuracy"]
    assert fgsm[0.3] < clean - 0.3  # a large L-inf step breaks a normally trained model
    assert (pgd <= fgsm + 0.02).all()  # iterating is at least as strong as one step


def test_minimisation_attacks_respect_l2_bounds(digits_setup) -> None:
    eps = [0.0, 0.5, 1.0, 3.0]
    df, advs = _run(
        digits_setup,
        [
            {"name": "deepfool", "epsilons": eps},
            {"name": "cw", "epsilons": eps, "params": {"binary_search_steps": 3, "steps": 30}, "max_samples": 24},
        ],
        n=60,
        return_adversarials=True,
    )
    _check_adversarials(digits_setup, df, advs, 60)
    assert advs[("cw", 3.0)].shape[0] == 24 and advs[("deepfool", 3.0)].shape[0] == 60
    clean60, clean24 = digits_setup.clean_accuracy(60), digits_setup.clean_accuracy(24)
    df = df.set_index(["attack", "epsilon"])
    assert df.loc[("deepfool", 0.0), "robust_accuracy"] == pytest.approx(clean60)
    assert df.loc[("cw", 0.0), "robust_accuracy"] == pytest.approx(clean24)
    assert df.loc[("cw", 0.0), "n"] == 24 and df.loc[("deepfool", 0.0), "n"] == 60
    assert (df["norm"] == "l2").all()
    assert df.loc[("deepfool", 3.0), "robust_accuracy"] < clean60 - 0.3  # L2 of 3 on 16x16 images is large


def test_pgd_is_reproducible_for_a_seed_and_restores_model_mode(digits_setup) -> None:
    cfg = [{"name": "pgd", "epsilons": [0.1], "params": {"steps": 5}}]
    digits_setup.model.train()
    try:
        a = _run(digits_setup, cfg, n=64, seed=3)
        assert digits_setup.model.training  # mode restored
        b = _run(digits_setup, cfg, n=64, seed=3)
    finally:
        digits_setup.model.eval()
    assert a.equals(b)


def test_batches_accumulate_to_the_same_result(digits_setup) -> None:
    cfg = [{"name": "fgsm", "epsilons": [0.0, 0.1]}]
    whole = _run(digits_setup, cfg, n=100, batch_size=100)
    split = _run(digits_setup, cfg, n=100, batch_size=7)
    assert whole["robust_accuracy"].tolist() == pytest.approx(split["robust_accuracy"].tolist())


def test_out_of_bound_perturbation_is_detected(digits_setup, monkeypatch) -> None:
    class _Overshoot:  # a broken "attack" whose perturbation is twice epsilon
        def __call__(self, model, x, y, *, epsilons):
            advs = [(x + 2 * e).clamp(0, 1) for e in epsilons]
            return advs, advs, torch.zeros(len(epsilons), len(x), dtype=torch.bool)

    monkeypatch.setitem(ATTACKS, "broken", AttackSpec("linf", _Overshoot))
    with pytest.raises(RuntimeError, match="above its bound"):
        _run(digits_setup, [{"name": "broken", "epsilons": [0.1]}], n=8)


def test_unknown_attack_lists_valid_names(digits_setup) -> None:
    with pytest.raises(ValueError, match=r"unknown attack 'bim'.*'cw', 'deepfool', 'fgsm', 'pgd'"):
        _run(digits_setup, [{"name": "bim", "epsilons": [0.1]}], n=4)


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        ({"name": "fgsm", "epsilons": []}, "non-empty list 'epsilons'"),
        ({"name": "fgsm", "epsilons": [-0.1]}, "must be finite and >= 0"),
        ({"name": "fgsm", "epsilons": [0.1], "eps": 1}, "unknown keys"),
        ({"name": "pgd", "epsilons": [0.1], "params": {"stepz": 3}}, "unknown params"),
        ({"name": "cw", "epsilons": [0.1], "max_samples": 0}, "max_samples"),
    ],
)
def test_bad_attack_configs_error(cfg, match) -> None:
    with pytest.raises(ValueError, match=match):
        validate_attack_configs([cfg])


def test_config_defaults_are_filled() -> None:
    [fgsm, cw] = validate_attack_configs([{"name": "fgsm", "epsilons": [0.1, 0, 0.1]}, {"name": "cw", "epsilons": [1]}])
    assert fgsm == {"name": "fgsm", "epsilons": [0.0, 0.1], "params": {}, "max_samples": None}
    assert cw["max_samples"] == 100


def test_pgd_with_too_small_total_step_is_rejected() -> None:
    with pytest.raises(ValueError, match="cannot reach the epsilon-ball boundary"):
        ATTACKS["pgd"].build(steps=10, rel_stepsize=0.01)


@pytest.mark.parametrize(
    ("mean", "std", "match"),
    [
        (None, [0.3], "model checkpoint has no normalisation metadata"),
        ([0.3], None, "model checkpoint has no normalisation metadata"),
        ([0.3, 0.3, 0.3], [0.3, 0.3, 0.3], "3 mean and 3 std values for images with 1 channels"),
        ([0.3], [0.0], "must be positive"),
    ],
)
def test_normalisation_is_validated(digits_setup, mean, std, match) -> None:
    with pytest.raises(ValueError, match=match):
        run_attacks(
            digits_setup.model,
            digits_setup.images[:4],
            digits_setup.labels[:4],
            mean=mean,
            std=std,
            attacks=[{"name": "fgsm", "epsilons": [0.1]}],
        )


def test_normalised_images_are_rejected(digits_setup) -> None:
    x = (digits_setup.images[:4] - 0.3) / 0.4
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        run_attacks(
            digits_setup.model,
            x,
            digits_setup.labels[:4],
            mean=digits_setup.mean,
            std=digits_setup.std,
            attacks=[{"name": "fgsm", "epsilons": [0.1]}],
        )
