"""Gromov's span criterion and the streamed cka criterion on the real stories260K (issue 14).

1. ``angular_span`` at budgets blocks1 and blocks2: the layers it removes, its scores, and the sliding-window
   perplexity of the model without them (in-domain: all of TinyStories valid-b; out-of-domain: the first
   ``--ood-tokens`` tokens of Austen's "Persuasion"), with the settings of docs/language-models.md's table.
2. The cka criterion's streamed scores (extraction's StreamingLinearCKA) against 1 - linear CKA of the kept
   (n, d) features, in float32 (the default) and float64: the largest absolute difference.
3. Peak resident memory of extraction on a long calibration set (``--long-tokens`` tokens: valid-a's windows
   repeated, which changes nothing for memory) with the bypassed features kept and without them (the streamed
   path), each in a fresh process (Linux: the peak RSS is reset just before extraction and read after it),
   beside the size of the arrays the kept path holds.

Prints Markdown-ready numbers and writes ``--out`` (JSON). No thresholds: a measurement for the docs.

Usage: python bench/check_span_and_streamed_cka.py --shared ../shared --out results/lm-check/span_cka.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from layerprune.io import write_json
from layerprune.lm import TokenWindows, import_llama2c, load_causal_lm, perplexity, tokenize_file
from layerprune.models.units import bypass
from layerprune.pruning import plan_pruning, score_units
from layerprune.selection import Budget
from layerprune.similarity import linear_cka
from layerprune.similarity.extract import extract_representations


def _model(shared: Path, tmp: str) -> tuple[torch.nn.Module, Path]:
    src = shared / "models/llama2c-stories260K"
    model_dir = import_llama2c(src / "stories260K.bin", src / "tok512.model", Path(tmp) / "stories260K")
    return load_causal_lm(model_dir), model_dir


def _status(key: str) -> float:
    """A line of /proc/self/status in MiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {key}")


def _reset_peak_rss() -> float:
    """Resets the peak resident set size to the current one (Linux: clear_refs 5) and returns it in MiB, so that
    the peak after measures the extraction and not the imports and tokenization before it."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status("VmRSS")


def _peak_rss() -> float:
    return _status("VmHWM")


def _memory(args: argparse.Namespace) -> None:
    """One extraction in this process; prints its peak RSS (MiB) as JSON."""
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model, model_dir = _model(args.shared, tmp)
        calib = tokenize_file(args.shared / "data/tinystories/valid-a.txt", model_dir)
    repeats = -(-args.long_tokens // len(calib))
    windows = TokenWindows(calib.repeat(repeats), args.seq_len)
    loader = DataLoader(windows, batch_size=4)
    before = _reset_peak_rss()
    start = time.perf_counter()
    reps = extract_representations(
        model, loader, input_size=(args.seq_len,), matrix=False, bypassed_features=args.memory == "kept",
        progress=False,
    )  # fmt: skip
    peak = _peak_rss()
    held = (reps.intact.nbytes + reps.bypassed.nbytes) / 2**20
    print(json.dumps({"tokens": len(windows) * args.seq_len, "rss_before_mib": before, "peak_rss_mib": peak,
                      "arrays_mib": held, "seconds": time.perf_counter() - start,
                      "bypass_cka": reps.bypass_cka.tolist()}))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--stride", type=int, default=192)
    parser.add_argument("--ood-tokens", type=int, default=40000)
    parser.add_argument("--calibration", type=int, default=32, help="calibration windows of valid-a")
    parser.add_argument("--long-tokens", type=int, default=100_000, help="tokens of the memory measurement")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--memory", choices=["kept", "streamed"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory:
        _memory(args)
        return
    if args.out is None:
        parser.error("--out is required")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        model, model_dir = _model(args.shared, tmp)
        ind = tokenize_file(args.shared / "data/tinystories/valid-b.txt", model_dir)
        ood = tokenize_file(args.shared / "data/austen/persuasion.txt", model_dir, max_tokens=args.ood_tokens)
        calib = tokenize_file(args.shared / "data/tinystories/valid-a.txt", model_dir)
    loader = DataLoader(TokenWindows(calib, args.seq_len, size=args.calibration, seed=0), batch_size=4)

    spans = {}
    for n in (1, 2):
        planned = plan_pruning(
            "angular_span", Budget.blocks(n), model, (args.seq_len,), min_units_per_stage=1, calibration_loader=loader
        )
        removed = planned.plan["removed"]
        with bypass(model, removed):  # equal to surgery (tests/unit/lm check it)
            ppl = {
                name: perplexity(model, tokens, seq_len=args.seq_len, stride=args.stride).perplexity
                for name, tokens in (("in_domain", ind), ("out_of_domain", ood))
            }
        spans[f"blocks{n}"] = {"removed": removed, "scores": planned.scores, "perplexity": ppl}
        print(f"angular_span blocks{n}", spans[f"blocks{n}"], flush=True)

    cka = {}
    for precision in (None, "float64"):
        reps = extract_representations(model, loader, input_size=(args.seq_len,), precision=precision, progress=False)
        streamed = score_units("cka", model, reps.candidates, representations=reps)
        kept = {c: 1.0 - linear_cka(reps.intact, reps.bypassed_of(c), precision=precision) for c in reps.candidates}
        diff = max(abs(streamed[c] - kept[c]) for c in reps.candidates)
        rel = max(abs(streamed[c] - kept[c]) / abs(kept[c]) for c in reps.candidates)
        cka[str(precision or "float32")] = {"streamed": streamed, "in_memory": kept, "max_abs_diff": diff,
                                            "max_rel_diff": rel, "tokens": int(reps.intact.shape[0])}  # fmt: skip
        print("cka", precision or "float32", cka[str(precision or "float32")], flush=True)

    memory = {}
    for mode in ("kept", "streamed"):
        cmd = [sys.executable, __file__, "--shared", str(args.shared), "--memory", mode, "--threads",
               str(args.threads), "--long-tokens", str(args.long_tokens), "--seq-len", str(args.seq_len)]  # fmt: skip
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        memory[mode] = json.loads(out)
        print("memory", mode, memory[mode], flush=True)
    np.testing.assert_allclose(memory["kept"]["bypass_cka"], memory["streamed"]["bypass_cka"], rtol=0, atol=0)
    result = {"seq_len": args.seq_len, "stride": args.stride, "tokens": {"in_domain": len(ind), "out_of_domain": len(ood),
              "calibration": args.calibration * args.seq_len}, "angular_span": spans, "cka": cka, "memory": memory,
              "seconds": time.perf_counter() - start, "threads": args.threads}  # fmt: skip
    write_json(args.out, result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
