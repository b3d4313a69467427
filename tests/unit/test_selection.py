"""Budgeted selection of units: budgets, greedy and per-segment (SGLP) rules, plan summaries."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from layerprune.selection import Budget, plan_summary, select_per_segment, select_span, select_units


@dataclass(frozen=True)
class FakeUnit:
    name: str
    stage: int
    index: int
    removable: bool
    macs: int
    params: int


def resnet_like(blocks_per_stage: list[int], macs: int = 100, params: int = 10) -> list[FakeUnit]:
    """Units of a CIFAR-style ResNet: the first unit of every stage after the first downsamples (not removable)."""
    return [
        FakeUnit(f"layer{s + 1}.{i}", s, i, not (s > 0 and i == 0), macs, params)
        for s, n in enumerate(blocks_per_stage)
        for i in range(n)
    ]


def single_stage(n: int, macs: list[int] | None = None) -> list[FakeUnit]:
    macs = macs or [100] * n
    return [FakeUnit(f"u{i}", 0, i, True, macs[i], 1) for i in range(n)]


# ---------------------------------------------------------------- Budget


@pytest.mark.parametrize("text", ["blocks1", "blocks9", "blocks27", "macs1", "macs50", "macs99", "params1", "params30"])
def test_budget_round_trips(text: str) -> None:
    assert str(Budget.parse(text)) == text


def test_budget_constructors() -> None:
    assert Budget.parse("blocks9") == Budget.blocks(9) == Budget("blocks", 9)
    assert Budget.parse("macs50") == Budget.macs(50)
    assert Budget.macs(50).kind == "macs" and Budget.macs(50).value == 50
    assert Budget.parse("params30") == Budget.params(30) == Budget("params", 30)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "blocks",
        "macs",
        "blocks0",
        "macs0",
        "macs100",
        "macs50.0",
        "macs0.5",
        "params0",
        "params100",
        "params05",
        "param30",
        "blocks09",
        "Blocks9",
        "flops50",
        " blocks9",
        "blocks9 ",
        "blocks-1",
        "9blocks",
    ],
)
def test_budget_parse_errors(text: str) -> None:
    with pytest.raises(ValueError, match="budget"):
        Budget.parse(text)


def test_budget_parse_error_message_shows_accepted_forms() -> None:
    with pytest.raises(ValueError, match=r"'macs50\.0'.*blocks<N>.*macs<P>"):
        Budget.parse("macs50.0")


@pytest.mark.parametrize(
    "bad",
    [
        lambda: Budget.blocks(0),
        lambda: Budget.macs(100),
        lambda: Budget("macs", 50.5),
        lambda: Budget("flops", 3),
        lambda: Budget.params(100),
        lambda: Budget.params(0),
        lambda: Budget.blocks(True),
    ],
)
def test_budget_rejects_bad_values(bad) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        bad()


# ---------------------------------------------------------------- select_units


def test_blocks_budget_takes_exactly_n_lowest_scores() -> None:
    units = single_stage(6)
    scores = {"u0": 5.0, "u1": 0.1, "u2": 3.0, "u3": 0.2, "u4": 4.0, "u5": 0.3}
    assert select_units(units, scores, Budget.blocks(3), 1000, min_units_per_stage=1) == ["u1", "u3", "u5"]
    assert select_units(units, scores, Budget.blocks(1), 1000, min_units_per_stage=1) == ["u1"]


def test_stage_minimum_counts_non_removable_units() -> None:
    units = resnet_like([3, 3, 3])
    # Stage 1's removable units score lowest; its downsampling unit layer2.0 still counts toward the minimum.
    scores = {u.name: (0.0 if u.stage == 1 else 1.0 + u.index) for u in units if u.removable}
    removed = select_units(units, scores, Budget.blocks(3), 10_000, min_units_per_stage=2)
    assert sum(name.startswith("layer2.") for name in removed) == 1
    assert len(removed) == 3
    assert "layer2.1" in removed  # tie at 0.0 broken in forward order
    assert set(removed) == {"layer2.1", "layer1.0", "layer3.1"}
    for stage in range(3):
        kept = [u for u in units if u.stage == stage and u.name not in removed]
        assert len(kept) >= 2
    # A looser minimum lets the selection follow the scores further into stage 1.
    looser = select_units(units, scores, Budget.blocks(3), 10_000, min_units_per_stage=1)
    assert {"layer2.1", "layer2.2"} <= set(looser)


def test_mac_budget_met_with_shortest_prefix_in_score_order() -> None:
    macs = [50, 300, 120, 80, 200, 250]
    units = single_stage(6, macs)
    total = 1200
    scores = {"u0": 0.1, "u1": 0.9, "u2": 0.2, "u3": 0.3, "u4": 0.4, "u5": 0.5}
    removed = select_units(units, scores, Budget.macs(30), total, min_units_per_stage=1)
    # Score order u0 (50), u2 (120), u3 (80), u4 (200): 250 < 360 after three, 450 >= 360 after four.
    assert removed == ["u0", "u2", "u3", "u4"]
    got = sum(u.macs for u in units if u.name in removed)
    assert 100 * got >= 30 * total
    assert 100 * (got - 200) < 30 * total


def _units_with_params(params: list[int], macs: int = 100) -> list[FakeUnit]:
    return [FakeUnit(f"u{i}", 0, i, True, macs, p) for i, p in enumerate(params)]


def test_params_budget_counts_parameters_not_macs() -> None:
    # Equal MACs, unequal parameters: only the parameters decide when a params budget is met.
    params = [10, 400, 40, 100, 250, 200]
    units = _units_with_params(params)
    total_params = 2000  # the whole model: the units' 1,000 plus 1,000 in the embedding and head
    scores = {"u0": 0.1, "u1": 0.9, "u2": 0.2, "u3": 0.3, "u4": 0.4, "u5": 0.5}
    removed = select_units(units, scores, Budget.params(15), 1000, min_units_per_stage=1, total_params=total_params)
    # Score order u0 (10), u2 (40), u3 (100), u4 (250): 150 < 300 after three, 400 >= 300 after four.
    assert removed == ["u0", "u2", "u3", "u4"]
    got = sum(params[int(name[1:])] for name in removed)
    assert 100 * got >= 15 * total_params and 100 * (got - 250) < 15 * total_params
    # The same percent of MACs is met after two units (200 of 1,000 MACs >= 15%).
    assert select_units(units, scores, Budget.macs(15), 1000, min_units_per_stage=1) == ["u0", "u2"]


def test_params_budget_exact_boundary_and_is_met() -> None:
    assert Budget.params(20).is_met(2, 0, 1, removed_params=200, total_params=1000)
    assert not Budget.params(20).is_met(2, 10**6, 1, removed_params=199, total_params=1000)
    with pytest.raises(ValueError, match="total_params"):
        Budget.params(20).is_met(2, 0, 1, removed_params=200)


def test_params_budget_needs_total_params() -> None:
    units = _units_with_params([10, 20])
    with pytest.raises(ValueError, match=r"params10 needs total_params"):
        select_units(units, {"u0": 0.0, "u1": 1.0}, Budget.params(10), 1000, min_units_per_stage=0)


def test_impossible_params_budget_reports_percent_reached() -> None:
    units = _units_with_params([10, 20, 30])
    with pytest.raises(ValueError, match=r"params50 cannot be met.*2 units = 3\.0% of 1000 parameters"):
        select_units(units, {"u0": 0.0, "u1": 1.0, "u2": 2.0}, Budget.params(50), 1000, 1, total_params=1000)


def test_params_budget_per_segment() -> None:
    units = _units_with_params([100, 100, 300, 100, 100, 100])
    scores = {u.name: float(u.index) for u in units}
    segments = [["u0", "u1"], ["u2", "u3", "u4", "u5"]]
    # Proportional: seg 0 (u0, 100), seg 1 (u2, 300): 400 of 2,000 parameters = 20%.
    removed = select_per_segment(
        units, scores, segments, Budget.params(20), 1000, min_units_per_stage=0, total_params=2000
    )
    assert removed == ["u0", "u2"]
    # 21% needs one more: seg 1 is at 1/4 < seg 0's 1/2, so u3 goes.
    removed = select_per_segment(
        units, scores, segments, Budget.params(21), 1000, min_units_per_stage=0, total_params=2000
    )
    assert removed == ["u0", "u2", "u3"]


def test_mac_budget_exact_boundary_counts_as_met() -> None:
    units = single_stage(10)
    scores = {u.name: float(u.index) for u in units}
    assert select_units(units, scores, Budget.macs(20), 1000, min_units_per_stage=1) == ["u0", "u1"]


def test_ties_are_deterministic_and_independent_of_dict_order() -> None:
    units = resnet_like([4, 4])
    scores = {u.name: 0.5 for u in units if u.removable}
    forward = select_units(units, scores, Budget.blocks(3), 10_000, min_units_per_stage=1)
    backward = select_units(
        units, dict(reversed(list(scores.items()))), Budget.blocks(3), 10_000, min_units_per_stage=1
    )
    assert forward == backward == ["layer1.0", "layer1.1", "layer1.2"]


def test_scores_of_non_removable_units_are_ignored() -> None:
    units = resnet_like([2, 3])
    scores = {u.name: 1.0 for u in units}
    scores["layer2.0"] = -100.0  # downsampling unit: never selected, whatever its score
    assert "layer2.0" not in select_units(units, scores, Budget.blocks(2), 10_000, min_units_per_stage=1)


def test_impossible_blocks_budget_says_how_far_it_got() -> None:
    units = resnet_like([3, 3, 3])  # min 2 per stage: at most 1 + 1 + 1 removable
    scores = {u.name: 1.0 for u in units if u.removable}
    with pytest.raises(ValueError, match=r"blocks4.*removed 3 units.*min_units_per_stage=2.*Lower the budget"):
        select_units(units, scores, Budget.blocks(4), 10_000)


def test_impossible_mac_budget_reports_percent_reached() -> None:
    units = resnet_like([3, 3, 3])
    scores = {u.name: 1.0 for u in units if u.removable}
    with pytest.raises(ValueError, match=r"macs50.*removed 3 units = 30\.0% of 1000 MACs"):
        select_units(units, scores, Budget.macs(50), 1000)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda s: s.pop("u2"), "no score"),
        (lambda s: s.update({"u9": 1.0}), "does not have"),
        (lambda s: s.update({"u1": float("nan")}), "finite"),
    ],
)
def test_score_errors(mutate, match: str) -> None:  # type: ignore[no-untyped-def]
    units = single_stage(4)
    scores = {u.name: 1.0 for u in units}
    mutate(scores)
    with pytest.raises(ValueError, match=match):
        select_units(units, scores, Budget.blocks(1), 1000)


def test_unit_list_errors() -> None:
    units = single_stage(4)
    scores = {u.name: 1.0 for u in units}
    with pytest.raises(ValueError, match="forward order"):
        select_units(list(reversed(units)), scores, Budget.blocks(1), 1000)
    with pytest.raises(ValueError, match="total_macs"):
        select_units(units, scores, Budget.blocks(1), 399)
    with pytest.raises(ValueError, match="min_units_per_stage"):
        select_units(units, scores, Budget.blocks(1), 1000, min_units_per_stage=-1)
    with pytest.raises(ValueError, match="Budget"):
        select_units(units, scores, "blocks1", 1000)  # type: ignore[arg-type]


# ---------------------------------------------------------------- select_per_segment


def _per_segment_counts(removed: list[str], segments: list[list[str]]) -> list[int]:
    return [sum(name in seg for name in removed) for seg in segments]


def test_proportional_and_uniform_allocation() -> None:
    units = single_stage(12)
    scores = {u.name: float(u.index) for u in units}
    segments = [["u0", "u1"], ["u2", "u3", "u4", "u5"], [f"u{i}" for i in range(6, 12)]]
    prop = select_per_segment(units, scores, segments, Budget.blocks(6), 10_000, min_units_per_stage=0)
    assert _per_segment_counts(prop, segments) == [1, 2, 3]
    assert prop == ["u0", "u2", "u3", "u6", "u7", "u8"]  # least important of each segment first
    uni = select_per_segment(
        units, scores, segments, Budget.blocks(6), 10_000, min_units_per_stage=0, allocation="uniform"
    )
    assert _per_segment_counts(uni, segments) == [2, 2, 2]
    # Unlike the global greedy rule, which would take u0..u5 here.
    assert select_units(units, scores, Budget.blocks(6), 10_000, min_units_per_stage=0) == [f"u{i}" for i in range(6)]


def test_largest_remainder_ties_go_to_earlier_segments() -> None:
    units = single_stage(10)
    scores = {u.name: 1.0 for u in units}
    segments = [["u0"], ["u1", "u2"], [f"u{i}" for i in range(3, 10)]]
    # Quotas 0.5, 1.0, 3.5 -> floors 0, 1, 3; the spare unit ties (0.5 vs 0.5) and goes to segment 0.
    removed = select_per_segment(units, scores, segments, Budget.blocks(5), 10_000, min_units_per_stage=0)
    assert _per_segment_counts(removed, segments) == [1, 1, 3]


def test_share_a_segment_cannot_take_goes_to_the_others() -> None:
    units = resnet_like([6, 3])  # with min 2 per stage, stage 1 (layer2.0 downsamples) can give one unit
    scores = {u.name: float(u.index) for u in units if u.removable}
    segments = [[u.name for u in units if u.stage == 0], [u.name for u in units if u.stage == 1]]
    # Shares of 5 by sizes 6:3 are [3, 2] (3.33, 1.67); segment 1 can take one unit, so its second goes to segment 0.
    removed = select_per_segment(units, scores, segments, Budget.blocks(5), 10_000, min_units_per_stage=2)
    assert _per_segment_counts(removed, segments) == [4, 1]
    assert removed == ["layer1.0", "layer1.1", "layer1.2", "layer1.3", "layer2.1"]
    # With room in stage 1 the shares stand.
    removed = select_per_segment(units, scores, segments, Budget.blocks(5), 10_000, min_units_per_stage=1)
    assert _per_segment_counts(removed, segments) == [3, 2]


def test_mac_budget_round_robin() -> None:
    units = single_stage(6)
    scores = {u.name: float(u.index) for u in units}
    segments = [["u0", "u1"], ["u2", "u3", "u4", "u5"]]
    uni = select_per_segment(
        units, scores, segments, Budget.macs(50), 1000, min_units_per_stage=0, allocation="uniform"
    )
    assert uni == ["u0", "u1", "u2", "u3", "u4"]  # 0,2,1,3 then segment 0 is empty, 4 -> 500 MACs
    prop = select_per_segment(units, scores, segments, Budget.macs(30), 1000, min_units_per_stage=0)
    # taken/size: 0/2 vs 0/4 -> seg 0; 1/2 vs 0/4 -> seg 1; 1/2 vs 1/4 -> seg 1: 300 MACs = 30%.
    assert prop == ["u0", "u2", "u3"]


def test_per_segment_impossible_budget_raises() -> None:
    units = resnet_like([3, 3])
    scores = {u.name: 1.0 for u in units if u.removable}
    segments = [[u.name for u in units if u.stage == 0], [u.name for u in units if u.stage == 1]]
    with pytest.raises(ValueError, match=r"blocks3.*per-segment.*removed 2 units.*min_units_per_stage"):
        select_per_segment(units, scores, segments, Budget.blocks(3), 10_000)
    with pytest.raises(ValueError, match=r"macs50.*removed 2 units"):
        select_per_segment(units, scores, segments, Budget.macs(50), 1000)


@pytest.mark.parametrize(
    ("segments", "allocation", "match"),
    [
        ([["u0", "u1"], ["u1", "u2", "u3"]], "proportional", "disjoint"),
        ([["u0", "u1"], ["u2", "u9"]], "proportional", "does not have"),
        ([["u0", "u1"], ["u2"]], "proportional", r"\['u3'\] are in no segment"),
        ([["u0", "u1"], [], ["u2", "u3"]], "proportional", "non-empty"),
        ([], "proportional", "empty"),
        ([["u0", "u1"], ["u2", "u3"]], "even", "allocation"),
    ],
)
def test_per_segment_errors(segments: list[list[str]], allocation: str, match: str) -> None:
    units = single_stage(4)
    scores = {u.name: 1.0 for u in units}
    with pytest.raises(ValueError, match=match):
        select_per_segment(units, scores, segments, Budget.blocks(1), 1000, allocation=allocation)


# ---------------------------------------------------------------- plan_summary


def test_plan_summary_numbers() -> None:
    units = [
        FakeUnit("layer1.0", 0, 0, True, 100, 10),
        FakeUnit("layer1.1", 0, 1, True, 100, 10),
        FakeUnit("layer2.0", 1, 0, False, 150, 30),
        FakeUnit("layer2.1", 1, 1, True, 200, 40),
    ]
    summary = plan_summary(units, ["layer2.1", "layer1.0"], total_macs=1000, total_params=200)
    assert summary == {
        "removed": ["layer1.0", "layer2.1"],
        "n_removed": 2,
        "removed_macs": 300,
        "removed_params": 50,
        "remaining_macs": 700,
        "remaining_params": 150,
        "macs_reduction": pytest.approx(0.3),
        "params_reduction": pytest.approx(0.25),
        "blocks_per_stage_before": [2, 2],
        "blocks_per_stage_after": [1, 1],
    }
    assert plan_summary(units, [], 1000, 200)["blocks_per_stage_after"] == [2, 2]


def test_plan_summary_errors() -> None:
    units = resnet_like([2, 2])
    with pytest.raises(ValueError, match="not removable"):
        plan_summary(units, ["layer2.0"], 1000, 100)
    with pytest.raises(ValueError, match="does not have"):
        plan_summary(units, ["layer9.0"], 1000, 100)
    with pytest.raises(ValueError, match="twice"):
        plan_summary(units, ["layer1.0", "layer1.0"], 1000, 100)
    with pytest.raises(ValueError, match="total_params"):
        plan_summary(units, ["layer1.0"], 1000, 0)


# ---------------------------------------------------------------- select_span


def _span_scores(table: dict[int, dict[str, float]], calls: list[int]):  # type: ignore[no-untyped-def]
    def scores(n: int) -> dict[str, float]:
        calls.append(n)
        return table[n]

    return scores


def test_span_blocks_budget_takes_the_lowest_block_of_that_length() -> None:
    units = single_stage(6)
    calls: list[int] = []
    table = {3: {"u0": 0.5, "u1": 0.4, "u2": 0.1, "u3": 0.3}}
    removed, scores, n = select_span(units, _span_scores(table, calls), Budget.blocks(3), 1000, 1)
    assert (removed, n, calls) == (["u2", "u3", "u4"], 3, [3])
    assert scores == table[3]


def test_span_never_crosses_a_stage_or_a_non_removable_unit() -> None:
    units = resnet_like([3, 4])  # layer2.0 downsamples
    calls: list[int] = []
    # The lowest score starts a block that would cross into stage 1; the next one includes layer2.0.
    table = {2: {"layer1.2": 0.0, "layer2.0": 0.05, "layer1.0": 0.3, "layer2.2": 0.2, "layer2.1": 0.25}}
    removed, _, _ = select_span(units, _span_scores(table, calls), Budget.blocks(2), 10_000, 1)
    assert removed == ["layer2.2", "layer2.3"]
    # min_units_per_stage=2 leaves stage 0 (3 units) no room for 2, stage 1 (4 units) room for 2.
    removed, _, _ = select_span(units, _span_scores(table, calls), Budget.blocks(2), 10_000, 2)
    assert removed == ["layer2.2", "layer2.3"]
    table[2]["layer2.1"] = 0.1
    removed, _, _ = select_span(units, _span_scores(table, calls), Budget.blocks(2), 10_000, 2)
    assert removed == ["layer2.1", "layer2.2"]


def test_span_mac_and_params_budgets_take_the_shortest_block_that_meets_them() -> None:
    # u2 is expensive in MACs, u4 in parameters.
    units = [FakeUnit(f"u{i}", 0, i, True, m, p) for i, (m, p) in enumerate(
        [(100, 10), (100, 10), (400, 10), (100, 10), (100, 300), (100, 10)]
    )]  # fmt: skip
    calls: list[int] = []
    table = {1: {f"u{i}": 0.5 for i in range(6)}, 2: {f"u{i}": float(i) for i in range(5)}}
    # 30% of 1,000 MACs: u2 (400) alone meets it, so n = 1 and only u2 qualifies despite equal scores.
    removed, _, n = select_span(units, _span_scores(table, calls), Budget.macs(30), 1000, 1)
    assert (removed, n) == (["u2"], 1)
    # 45%: no unit alone; blocks of 2 with >= 450 MACs: (u1, u2) = 500 and (u2, u3) = 500; u1 scores lower.
    removed, _, n = select_span(units, _span_scores(table, calls), Budget.macs(45), 1000, 1)
    assert (removed, n) == (["u1", "u2"], 2)
    # 40% of 800 parameters = 320: no unit alone (u4 has 300); (u3, u4) and (u4, u5) have 310; n = 3:
    # every block holding u4 has 320; of the starts u2, u3, u4, u2 scores lowest.
    table[3] = {"u0": 0.0, "u1": 0.1, "u2": 0.2, "u3": 0.3}
    removed, _, n = select_span(units, _span_scores(table, calls), Budget.params(40), 1000, 1, total_params=800)
    assert (removed, n) == (["u2", "u3", "u4"], 3)
    assert calls == [1, 2, 3]  # scored once per selection, for its n only


def test_span_errors() -> None:
    units = single_stage(4)
    with pytest.raises(ValueError, match=r"blocks4 cannot be met by one block.*longest such block has 3 units"):
        select_span(units, lambda n: {}, Budget.blocks(4), 1000, 1)
    with pytest.raises(ValueError, match="leave out every allowed block"):
        select_span(units, lambda n: {"u3": 0.0}, Budget.blocks(2), 1000, 1)
    with pytest.raises(ValueError, match="must be finite"):
        select_span(units, lambda n: {"u0": float("nan")}, Budget.blocks(2), 1000, 1)
    with pytest.raises(ValueError, match="needs total_params"):
        select_span(units, lambda n: {"u0": 0.0}, Budget.params(10), 1000, 1)
