"""Every criterion on the real pretrained stories260K (llama2.c, 5 decoder layers), before healing.

Imports the shared llama2.c checkpoint, measures sliding-window perplexity of the intact model and with
each single decoder layer removed (in-domain: TinyStories valid-b; out-of-domain: the start of Austen's
"Persuasion"), scores every layer with every criterion on calibration windows of TinyStories valid-a,
and reports each criterion's ranking, its Spearman correlation with the drop-one-layer perplexity
ranking, the layers it removes at budgets of 1 and 2 layers and the perplexity after removing them.
Gromov et al.'s span variant (2 consecutive layers) is reported beside it. Prints Markdown and writes
``--out`` (JSON). No thresholds: this is a measurement for docs/language-models.md.

Usage: python bench/check_stories260k_layers.py --shared ../shared --out results/lm-check/stories260k.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from scipy.stats import spearmanr
from torch.utils.data import DataLoader

from layerprune.criteria import criterion_names
from layerprune.criteria.scores import angular_span_scores
from layerprune.io import write_json
from layerprune.lm import TokenWindows, import_llama2c, load_causal_lm, perplexity, tokenize_file
from layerprune.models.units import bypass, unit_names
from layerprune.pruning import plan_pruning
from layerprune.segmentation import DEFAULT_THRESHOLD, segment_units
from layerprune.selection import Budget
from layerprune.similarity.extract import extract_representations
from layerprune.similarity.tables import candidate_distances


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--stride", type=int, default=192)
    parser.add_argument("--ood-tokens", type=int, default=40000, help="first tokens of Persuasion scored")
    parser.add_argument("--calibration", type=int, default=32, help="calibration windows of valid-a")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    src = args.shared / "models/llama2c-stories260K"
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = import_llama2c(src / "stories260K.bin", src / "tok512.model", Path(tmp) / "stories260K")
        model = load_causal_lm(model_dir)
        ind = tokenize_file(args.shared / "data/tinystories/valid-b.txt", model_dir)
        ood = tokenize_file(args.shared / "data/austen/persuasion.txt", model_dir, max_tokens=args.ood_tokens)
        calib = tokenize_file(args.shared / "data/tinystories/valid-a.txt", model_dir)
    units = unit_names(model)
    cache: dict[tuple[str, ...], dict] = {}

    def ppl(removed: tuple[str, ...]) -> dict:
        if removed not in cache:
            with bypass(model, removed):  # equal to surgery (tests/unit/lm check it)
                cache[removed] = {
                    name: perplexity(model, tokens, seq_len=args.seq_len, stride=args.stride).perplexity
                    for name, tokens in (("in_domain", ind), ("out_of_domain", ood))
                }
            print(removed, cache[removed], flush=True)
        return cache[removed]

    intact = ppl(())
    drop_one = {u: ppl((u,)) for u in units}
    loader = DataLoader(TokenWindows(calib, args.seq_len, size=args.calibration, seed=0), batch_size=4)
    reps = extract_representations(model, loader, input_size=(args.seq_len,), progress=False)
    metrics = ["cka", "procrustes", "cca", "bures"]
    table = candidate_distances(reps, metrics)
    offset = reps.matrix_names.index(reps.units[0])
    segments = segment_units(reps.units, reps.cka_matrix[offset:, offset:], "auto", DEFAULT_THRESHOLD)
    criteria: dict[str, dict] = {}
    for method in criterion_names():
        row: dict = {}
        for n in (1, 2):
            planned = plan_pruning(
                method, Budget.blocks(n), model, (args.seq_len,), min_units_per_stage=1, representations=reps,
                candidate_distances=table, consensus_metrics=metrics, segments=segments["segment_units"],
                calibration_loader=loader,
            )  # fmt: skip
            removed = tuple(sorted(planned.plan["removed"]))
            row[f"removed_{n}"] = list(removed)
            row[f"ppl_{n}"] = ppl(removed)
            if n == 1:
                row["scores"] = planned.scores
                for domain in ("in_domain", "out_of_domain"):
                    rho = spearmanr([planned.scores[u] for u in units], [drop_one[u][domain] for u in units])
                    row[f"spearman_{domain}"] = float(rho.statistic)
        criteria[method] = row
        print(method, row, flush=True)
    span = angular_span_scores(model, loader, 2)
    best = min(span, key=span.get)
    first = units.index(best)
    span_removed = tuple(units[first : first + 2])
    result = {
        "model": "stories260K (llama2.c, imported)",
        "seq_len": args.seq_len,
        "stride": args.stride,
        "tokens": {"in_domain": len(ind), "out_of_domain": len(ood), "calibration": args.calibration * args.seq_len},
        "intact": intact,
        "drop_one": drop_one,
        "segments": segments["segment_units"],
        "cka_matrix": reps.cka_matrix.tolist(),
        "criteria": criteria,
        "angular_span2": {"scores": span, "removed": list(span_removed), "ppl": ppl(span_removed)},
        "seconds": time.perf_counter() - start,
        "threads": args.threads,
    }
    write_json(args.out, result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
