"""The causal_lm family on the real stories260K and on tiny random GPT-2 / OPT / Llama models."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from layerprune.lm import CausalLM, TokenWindows, load_causal_lm, perplexity, read_llama2c, save_causal_lm
from layerprune.models import count_macs, count_params, get_units
from layerprune.models.units import bypass
from layerprune.surgery import remove_units

from .conftest import CONTINUATION

PROMPT = "Once upon a time,"


def _prompt_ids(model_dir: Path) -> torch.Tensor:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    return torch.tensor([[tok.bos_token_id, *tok(PROMPT, add_special_tokens=False)["input_ids"]]]), tok


def _greedy(model: CausalLM, ids: torch.Tensor, *, use_cache: bool, n: int = 30) -> list[int]:
    out = model.generate(ids, max_new_tokens=n, do_sample=False, use_cache=use_cache, pad_token_id=0)
    return out[0, ids.shape[1] :].tolist()


def test_import_continues_the_reference_story(stories260k: Path) -> None:
    model = load_causal_lm(stories260k)
    ids, tok = _prompt_ids(stories260k)
    text = tok.decode(_greedy(model, ids, use_cache=True))
    assert text.startswith(CONTINUATION), text
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= {p.name for p in stories260k.iterdir()}


def test_read_llama2c_rejects_a_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.bin"
    path.write_bytes(struct.pack("<7i", 8, 16, 1, 2, 2, 4, 8) + b"\0" * 40)
    with pytest.raises(ValueError, match="ends early"):
        read_llama2c(path)


def test_units_and_cost_per_token_by_hand(stories260k: Path) -> None:
    model = load_causal_lm(stories260k)
    cfg = model.config
    d, hidden, heads, kv = cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads, cfg.num_key_value_heads
    kv_dim = d // heads * kv
    seq = 64
    linear = d * d * 2 + d * kv_dim * 2 + 3 * d * hidden  # q, o; k, v; gate, up, down
    attention = 2 * seq * d  # q k^T and attn v over a T-token sequence, per token
    units = get_units(model, (seq,))
    assert [u.name for u in units] == [f"layers.{i}" for i in range(5)]
    assert all(u.removable for u in units)
    assert {u.macs for u in units} == {linear + attention}
    assert {u.params for u in units} == {linear + 2 * d}  # plus the two RMSNorm weights
    total, _ = count_macs(model, (seq,))
    assert total == 5 * (linear + attention) + d * cfg.vocab_size  # + the LM head
    assert count_params(model) == cfg.vocab_size * d + 5 * (linear + 2 * d) + d  # tied head


def test_surgery_renumbers_and_keeps_cached_generation_equal(stories260k: Path, valid_b: torch.Tensor) -> None:
    model = load_causal_lm(stories260k)
    pruned = remove_units(model, ["layers.1", "layers.3"])
    assert len(model.layers) == 5  # the original is untouched
    assert pruned.config.num_hidden_layers == 3
    assert [layer.self_attn.layer_idx for layer in pruned.decoder_layers] == [0, 1, 2]
    ids, _ = _prompt_ids(stories260k)
    assert _greedy(pruned, ids, use_cache=True) == _greedy(pruned, ids, use_cache=False)
    with bypass(model, ["layers.1", "layers.3"]):
        bypassed = perplexity(model, valid_b, seq_len=128, stride=96)
    assert perplexity(pruned, valid_b, seq_len=128, stride=96).nll == pytest.approx(bypassed.nll, rel=1e-6)


def test_saved_pruned_model_reloads_with_the_same_perplexity(
    stories260k: Path, valid_b: torch.Tensor, tmp_path: Path
) -> None:
    pruned = remove_units(load_causal_lm(stories260k), ["layers.2"])
    out = save_causal_lm(pruned, tmp_path / "pruned", tokenizer=stories260k)
    reloaded = load_causal_lm(out)
    assert reloaded.config.num_hidden_layers == 4
    before = perplexity(pruned, valid_b, seq_len=128, stride=96)
    after = perplexity(reloaded, valid_b, seq_len=128, stride=96)
    assert after.nll == pytest.approx(before.nll, rel=1e-6)
    assert math.isfinite(after.perplexity) and after.tokens == len(valid_b) - 1


def test_perplexity_of_one_window_is_the_models_own_loss(stories260k: Path, valid_b: torch.Tensor) -> None:
    model = load_causal_lm(stories260k)
    window = valid_b[:128]
    with torch.no_grad():
        reference = float(model.lm(input_ids=window[None], labels=window[None]).loss)
    result = perplexity(model, window, seq_len=128, stride=64)
    assert result.nll == pytest.approx(reference, rel=1e-5)
    assert result.perplexity == pytest.approx(math.exp(reference), rel=1e-5)
    with pytest.raises(ValueError, match="stride"):
        perplexity(model, window, seq_len=128, stride=128)


def test_sliding_windows_score_every_token_once() -> None:
    """A bigram model in units scores each token exactly once, from any stride."""
    from layerprune.lm.text import _windows

    for n, seq, stride in [(10, 4, 1), (10, 4, 3), (1000, 256, 192), (257, 256, 255)]:
        covered = []
        for begin, end, first in _windows(n, seq, stride):
            assert begin < first <= end and end - begin <= seq
            covered += range(first, end)
        assert covered == list(range(1, n))


def test_token_windows_shift_by_one() -> None:
    tokens = torch.arange(50)
    data = TokenWindows(tokens, 8, size=3, seed=1)
    assert len(data) == 3
    for x, y in data:
        assert torch.equal(y, x + 1) and len(x) == 8
    with pytest.raises(ValueError, match="window"):
        TokenWindows(torch.arange(5), 8)


def _tiny(kind: str) -> torch.nn.Module:
    import transformers as tf

    torch.manual_seed(0)
    common = {"vocab_size": 32, "max_position_embeddings": 32}
    if kind == "gpt2":
        return tf.GPT2LMHeadModel(tf.GPT2Config(n_embd=16, n_layer=3, n_head=2, n_positions=32, vocab_size=32))
    if kind == "opt":
        return tf.OPTForCausalLM(
            tf.OPTConfig(
                hidden_size=16, num_hidden_layers=3, num_attention_heads=2, ffn_dim=32, word_embed_proj_dim=16, **common
            )
        )
    if kind == "llama":
        return tf.LlamaForCausalLM(
            tf.LlamaConfig(hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=32, **common)
        )
    return tf.GPTNeoXForCausalLM(
        tf.GPTNeoXConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, **common)
    )


@pytest.mark.parametrize("kind", ["gpt2", "opt", "llama"])
def test_known_architectures_in_units_match_their_own_forward(kind: str) -> None:
    lm = _tiny(kind).eval()
    model = CausalLM(lm)
    x = torch.randint(0, 32, (2, 12))
    with torch.no_grad():
        expected = lm(input_ids=x).logits.transpose(1, 2)
        assert torch.allclose(model(x), expected, atol=1e-5)
        pruned = remove_units(model, ["layers.1"])
        with bypass(model, ["layers.1"]):
            assert torch.allclose(pruned(x), model(x), atol=1e-5)
        assert torch.allclose(pruned.lm(input_ids=x).logits.transpose(1, 2), pruned(x), atol=1e-5)
    assert _greedy(pruned, x[:1, :4], use_cache=True, n=6) == _greedy(pruned, x[:1, :4], use_cache=False, n=6)


def test_unknown_architecture_names_the_supported_ones() -> None:
    with pytest.raises(ValueError, match=r"gpt_neox.*\['gpt2', 'llama', 'mistral', 'opt', 'qwen2'\]"):
        CausalLM(_tiny("neox"))


def test_load_refuses_a_missing_directory_without_download(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="download: true"):
        load_causal_lm(tmp_path / "nowhere")


def test_every_criterion_scores_every_layer(stories260k: Path, shared_dir: Path) -> None:
    from layerprune.criteria import criterion_names
    from layerprune.criteria.scores import angular_span_scores
    from layerprune.lm import tokenize_file
    from layerprune.pruning import plan_pruning
    from layerprune.segmentation import segment_units
    from layerprune.selection import Budget
    from layerprune.similarity.extract import extract_representations
    from layerprune.similarity.tables import candidate_distances

    model = load_causal_lm(stories260k)
    tokens = tokenize_file(shared_dir / "data" / "tinystories" / "valid-a.txt", stories260k, max_tokens=4000)
    loader = DataLoader(TokenWindows(tokens, 64, size=8), batch_size=4)
    reps = extract_representations(model, loader, input_size=(64,), progress=False)
    assert reps.intact.shape == (8 * 64, model.config.hidden_size)  # one row per token
    # the calibration loss is the mean next-token cross-entropy of the intact model
    with torch.no_grad():
        own = np.mean([float(F.cross_entropy(model(x), y)) for x, y in loader])
    assert reps.intact_loss == pytest.approx(own, rel=1e-5)
    table = candidate_distances(reps, ["cka", "procrustes"])
    offset = reps.matrix_names.index(reps.units[0])
    segments = segment_units(reps.units, reps.cka_matrix[offset:, offset:], "auto", 0.1)["segment_units"]
    layers = [f"layers.{i}" for i in range(5)]
    for method in criterion_names():
        planned = plan_pruning(
            method, Budget.blocks(1), model, (64,), min_units_per_stage=1, representations=reps,
            candidate_distances=table, consensus_metrics=["cka", "procrustes"], segments=segments,
            calibration_loader=loader,
        )  # fmt: skip
        assert sorted(planned.scores) == layers, method
        assert all(math.isfinite(v) for v in planned.scores.values()), method
        assert len(planned.plan["removed"]) == 1 and planned.plan["removed"][0] in layers
    # Gromov's span variant, against the hidden states transformers itself returns (hidden_states[l]
    # is the input of layer l; the last one is after the final norm, so spans ending there are left out)
    span = angular_span_scores(model, loader, 2)
    assert list(span) == layers[:4]
    sums, count = np.zeros(3), 0
    with torch.no_grad():
        for x, _ in loader:
            hidden = model.lm(input_ids=x, output_hidden_states=True).hidden_states
            for start in range(3):
                a, b = hidden[start].reshape(-1, 64).double(), hidden[start + 2].reshape(-1, 64).double()
                sums[start] += float(torch.arccos(F.cosine_similarity(a, b, dim=1).clamp(-1, 1)).sum()) / math.pi
            count += x.numel()
    assert [span[f"layers.{i}"] for i in range(3)] == pytest.approx((sums / count).tolist(), rel=1e-6)


@pytest.mark.parametrize("n", [1, 2])
def test_angular_span_removes_the_argmin_of_transformers_hidden_states(stories260k: Path, shared_dir: Path, n: int):
    """The registered angular_span criterion with budget blocks<n> removes the n consecutive layers l..l+n-1 that
    minimise the angular distance between hidden_states[l] and hidden_states[l + n] as transformers returns them
    (output_hidden_states=True); the last layer's output, which transformers returns after the final norm, is
    taken from a forward hook on that layer."""
    from layerprune.lm import tokenize_file
    from layerprune.pruning import plan_pruning
    from layerprune.selection import Budget

    model = load_causal_lm(stories260k)
    tokens = tokenize_file(shared_dir / "data" / "tinystories" / "valid-a.txt", stories260k, max_tokens=4000)
    loader = DataLoader(TokenWindows(tokens, 64, size=8), batch_size=4)
    num_layers = model.config.num_hidden_layers
    last: dict[str, torch.Tensor] = {}
    hook = model.lm.model.layers[-1].register_forward_hook(
        lambda _m, _a, out: last.__setitem__("h", out[0] if isinstance(out, tuple) else out)
    )
    sums, count = np.zeros(num_layers - n + 1), 0
    try:
        with torch.no_grad():
            for x, _ in loader:
                hidden = [*model.lm(input_ids=x, output_hidden_states=True).hidden_states[:num_layers], last["h"]]
                for start in range(len(sums)):
                    a, b = (hidden[i].reshape(-1, hidden[i].shape[-1]).double() for i in (start, start + n))
                    sums[start] += float(torch.arccos(F.cosine_similarity(a, b, dim=1).clamp(-1, 1)).sum()) / math.pi
                count += x.numel()
    finally:
        hook.remove()
    best = int(np.argmin(sums))
    planned = plan_pruning(
        "angular_span", Budget.blocks(n), model, (64,), min_units_per_stage=1, calibration_loader=loader
    )
    assert planned.plan["removed"] == [f"layers.{i}" for i in range(best, best + n)]
    assert planned.plan["span"] == n
    assert [planned.scores[f"layers.{i}"] for i in range(len(sums))] == pytest.approx((sums / count).tolist(), rel=1e-6)


def test_cka_criterion_streams_the_bypassed_final_hidden_states(stories260k: Path, shared_dir: Path) -> None:
    """On the real stories260K, the cka criterion's streamed scores (1 - CKA of the final hidden states after the
    final norm, over 2,048 calibration tokens fed 256 at a time) equal 1 - CKA of the kept (n, d) features, and
    extraction without the bypassed features gives the same scores."""
    from layerprune.lm import tokenize_file
    from layerprune.pruning import score_units
    from layerprune.similarity import linear_cka
    from layerprune.similarity.extract import extract_representations

    model = load_causal_lm(stories260k)
    tokens = tokenize_file(shared_dir / "data" / "tinystories" / "valid-a.txt", stories260k, max_tokens=4000)
    loader = DataLoader(TokenWindows(tokens, 64, size=32), batch_size=4)
    for precision, rel in (("float64", 1e-6), (None, 1e-4)):
        reps = extract_representations(model, loader, input_size=(64,), precision=precision, progress=False)
        in_memory = {
            c: 1.0 - linear_cka(reps.intact, reps.bypassed_of(c), precision=precision) for c in reps.candidates
        }
        streamed = score_units("cka", model, reps.candidates, representations=reps)
        assert streamed == pytest.approx(in_memory, rel=rel), precision
    lean = extract_representations(model, loader, input_size=(64,), bypassed_features=False, progress=False)
    assert lean.bypassed.shape == (5, 0, model.config.hidden_size)
    assert score_units("cka", model, lean.candidates, representations=lean) == score_units(
        "cka", model, reps.candidates, representations=reps
    )


def test_a_parameter_budget_counts_the_embedding_a_mac_budget_does_not(stories260k: Path) -> None:
    """stories260K: a layer holds 45,440 of 260,032 parameters (17.5%; the tied embedding is in no layer) and
    78,080 of 423,168 MACs per token at T = 256 (18.5%), so 18% of the MACs takes one layer, 18% of the
    parameters two."""
    from layerprune.pruning import plan_pruning
    from layerprune.selection import Budget

    model = load_causal_lm(stories260k)
    assert 100 * 45_440 < 18 * 260_032 and 100 * 78_080 >= 18 * 423_168
    for budget, layers in ((Budget.macs(18), 1), (Budget.params(18), 2), (Budget.params(17), 1)):
        planned = plan_pruning("weight_norm", budget, model, (256,), min_units_per_stage=1)
        assert planned.plan["n_removed"] == layers, budget
        assert planned.plan["removed_params"] == 45_440 * layers


def _text_data(shared_dir: Path, stories260k: Path, **overrides: object) -> dict:
    from layerprune.config import validate_section

    data = {
        "name": "text",
        "tokenizer": str(stories260k),
        "train_text": str(shared_dir / "data" / "tinystories" / "valid-a.txt"),
        "test_text": str(shared_dir / "data" / "tinystories" / "valid-b.txt"),
        "ood_text": str(shared_dir / "data" / "austen" / "persuasion.txt"),
        "seq_len": 64,
        "stride": 48,
        "max_eval_tokens": 600,
        **overrides,
    }
    return validate_section("data", data)


def test_drop_one_layer_equals_the_surgically_pruned_models(stories260k: Path, shared_dir: Path) -> None:
    from layerprune.lm import tokenize_file
    from layerprune.lm.evaluation import drop_one_layer

    data = _text_data(shared_dir, stories260k)
    model = load_causal_lm(stories260k)
    table = drop_one_layer(model, data, batch_size=4)
    assert list(table["unit"]) == ["none", *[f"layers.{i}" for i in range(5)]]
    ood = tokenize_file(data["ood_text"], stories260k, max_tokens=600)
    for unit in ("layers.0", "layers.4"):
        row = table[table["unit"] == unit].iloc[0]
        pruned = remove_units(model, [unit])
        assert row["ood_perplexity"] == pytest.approx(perplexity(pruned, ood, seq_len=64, stride=48).perplexity)
    intact = table.iloc[0]
    assert intact["perplexity"] == pytest.approx(
        perplexity(
            model, tokenize_file(data["test_text"], stories260k, max_tokens=600), seq_len=64, stride=48
        ).perplexity
    )


def test_language_model_checkpoint_round_trip_and_metrics(stories260k: Path, shared_dir: Path, tmp_path: Path) -> None:
    """The baseline stage's checkpoint of a causal LM reloads with load_checkpoint; its metrics use text data."""
    from layerprune.baseline import make_baseline
    from layerprune.config import validate_section
    from layerprune.evaluation import evaluate_model
    from layerprune.models import load_checkpoint

    data = _text_data(shared_dir, stories260k)
    model_cfg = validate_section("model", {"family": "causal_lm", "path": str(stories260k)})
    make_baseline(data, model_cfg, {}, out_model=tmp_path / "model.pt", workdir=tmp_path, log_csv=tmp_path / "log.csv")
    ckpt = load_checkpoint(tmp_path / "model.pt")
    assert isinstance(ckpt.model, CausalLM) and ckpt.preprocessing["input_size"] == [64]
    original = load_causal_lm(stories260k)
    for key, value in original.lm.state_dict().items():
        assert torch.equal(ckpt.model.lm.state_dict()[key], value), key
    metrics = evaluate_model(ckpt.model, ckpt.preprocessing, data, batch_size=4)
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]))
    assert 0 < metrics["top1"] < 1 and metrics["ood_perplexity"] > metrics["perplexity"]
    assert metrics["macs"] == count_macs(original, (64,))[0] and metrics["n_test"] == 599


def test_cli_info_and_export_describe_a_language_model(
    stories260k: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import json

    from layerprune.cli import main

    assert main(["info", str(stories260k), "--seq-len", "64", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["cost_unit"] == "per token" and info["input_size"] == [64]
    assert [u["name"] for u in info["units"]] == [f"layers.{i}" for i in range(5)]
    assert info["macs"] == count_macs(load_causal_lm(stories260k), (64,))[0]
    # a pruned checkpoint exports to save_pretrained beside its tokenizer
    from layerprune.models import save_checkpoint

    pruned = remove_units(load_causal_lm(stories260k), ["layers.4"])
    preprocessing = {"input_size": [64], "tokenizer": str(stories260k), "mean": [], "std": [], "num_classes": 512}
    save_checkpoint(tmp_path / "model.pt", pruned, preprocessing=preprocessing)
    assert main(["export-hf", "--model", str(tmp_path / "model.pt"), "--out", str(tmp_path / "hf")]) == 0
    assert load_causal_lm(tmp_path / "hf").config.num_hidden_layers == 4
    assert (tmp_path / "hf" / "tokenizer.json").is_file()
