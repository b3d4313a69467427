"""Causal-LM commands: ``import-llama2c``, ``perplexity``, ``drop-one`` and ``export-hf``."""

from __future__ import annotations

import argparse
from pathlib import Path

from layerprune.cli._common import add_data_args, add_threads_arg, set_threads
from layerprune.io import write_csv, write_json

__all__ = ["register"]


def _import(args: argparse.Namespace) -> None:
    from layerprune.lm import import_llama2c

    out = import_llama2c(args.checkpoint, args.tokenizer, args.out)
    print(f"wrote {out} (LlamaForCausalLM, safetensors, with its tokenizer)")


def _perplexity(args: argparse.Namespace) -> None:
    import torch

    from layerprune.lm import load_causal_lm, perplexity, tokenize_file
    from layerprune.models import count_params

    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_causal_lm(args.model)
    rows = {}
    for name, path in zip(args.names or [Path(t).stem for t in args.text], args.text):
        tokens = tokenize_file(path, args.model, max_tokens=args.max_tokens)
        result = perplexity(
            model, tokens, seq_len=args.seq_len, stride=args.stride, batch_size=args.batch_size, device=args.device
        )
        rows[name] = {"text": str(path), **result.__dict__}
        print(
            f"{name}: perplexity {result.perplexity:.4f} over {result.tokens:,} tokens, {result.tokens_per_s:,.0f} tokens/s"
        )
    metrics = {
        "model": str(args.model),
        "params": count_params(model),
        "layers": len(model.layers),
        "tokenizer": "the model directory's Hugging Face tokenizer, BOS before each document",
        "perplexity": rows,
    }
    if args.out:
        write_json(args.out, metrics)


def _export(args: argparse.Namespace) -> None:
    from layerprune.lm import save_causal_lm
    from layerprune.models import load_checkpoint

    ckpt = load_checkpoint(args.model)
    if getattr(ckpt.model, "family", None) != "causal_lm":
        raise ValueError(f"{args.model} is not a causal language model; only those export to save_pretrained")
    tokenizer = args.tokenizer or ckpt.preprocessing["tokenizer"]
    out = save_causal_lm(ckpt.model, args.out, tokenizer=tokenizer)
    print(f"wrote {out} ({len(ckpt.model.layers)} decoder layers, safetensors, with its tokenizer)")


def _drop_one(args: argparse.Namespace) -> None:
    from layerprune.lm.evaluation import drop_one_layer
    from layerprune.models import load_checkpoint
    from layerprune.train import select_device

    set_threads(args.threads)
    model = load_checkpoint(args.model).model
    if getattr(model, "family", None) != "causal_lm":
        raise ValueError(
            f"{args.model} is not a causal language model; drop-one perplexity needs model.family causal_lm"
        )
    write_csv(args.out, drop_one_layer(model, args.data, batch_size=args.batch_size, device=select_device("auto")))


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("import-llama2c", help="llama2.c checkpoint -> LlamaForCausalLM + tokenizer directory")
    p.add_argument("--checkpoint", type=Path, required=True, help="llama2.c .bin (legacy format)")
    p.add_argument("--tokenizer", type=Path, required=True, help="its sentencepiece model (tok512.model)")
    p.add_argument("--out", type=Path, required=True, help="model directory to write")
    p.set_defaults(func=_import)

    p = subparsers.add_parser("perplexity", help="sliding-window perplexity of a causal LM on text files")
    p.add_argument("--model", type=Path, required=True, help="model directory (save_pretrained layout)")
    p.add_argument("--text", type=Path, nargs="+", required=True, help="UTF-8 text files")
    p.add_argument("--names", nargs="+", help="a name per text file (default: the file stems)")
    p.add_argument("--seq-len", type=int, required=True, help="tokens per window")
    p.add_argument("--stride", type=int, required=True, help="tokens between window starts (1..seq-len-1)")
    p.add_argument("--max-tokens", type=int, default=None, help="score only the first tokens of each file")
    p.add_argument("--batch-size", type=int, default=8, help="text windows per forward pass")
    p.add_argument("--device", default="cpu", help="torch device to score on (cpu, cuda)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--out", type=Path, help="metrics JSON to write")
    p.set_defaults(func=_perplexity)

    for name, helps, func in (
        ("export-hf", ("causal LM checkpoint -> save_pretrained directory + tokenizer", "a directory"), _export),
        ("drop-one", ("causal LM: perplexity with each single decoder layer removed", "drop_one.csv"), _drop_one),
    ):
        p = subparsers.add_parser(name, help=helps[0])
        p.add_argument("--model", type=Path, required=True, help="a layerprune checkpoint of a causal LM")
        p.add_argument("--out", type=Path, required=True, help=f"{helps[1]} to write")
        p.set_defaults(func=func)
        if name == "export-hf":
            p.add_argument("--tokenizer", type=Path, default=None, help="default: the one the checkpoint names")
        else:
            add_data_args(p)
            p.add_argument("--batch-size", type=int, default=8, help="windows per forward pass")
            add_threads_arg(p)
