# Clean evaluation of the baseline: top-1, params, MACs, latency, and the CodeCarbon-tracked
# energy of one test-set inference pass. The pruned and fine-tuned models get the same
# evaluation from the jobs that write them (prune_model, finetune_model).


rule evaluate_model:
    input:
        model=rules.baseline_train.output.model,
    output:
        metrics="results/{experiment}/baseline/metrics.json",
        emissions="results/{experiment}/baseline/emissions_inference.csv",
    log:
        "logs/evaluate_model/{experiment}/baseline.log",
    benchmark:
        "benchmarks/evaluate_model/{experiment}/baseline.tsv"
    conda:
        "../../envs/layerprune.yaml"
    threads: fanout_threads()
    params:
        data=as_json("data"),
        batch_size=lookup(dpath="evaluation/batch_size", within=config),
        latency_batch_size=lookup(dpath="evaluation/latency_batch_size", within=config),
        latency_repeats=lookup(dpath="evaluation/latency_repeats", within=config),
        country=lookup(dpath="emissions/country_iso_code", within=config),
        emissions_flag=emissions_flag(),
    message:
        "Evaluating the baseline of {wildcards.experiment}"
    shell:
        "layerprune evaluate --model {input.model} --data {params.data:q} --out {output.metrics}"
        " --batch-size {params.batch_size} --latency-batch-size {params.latency_batch_size}"
        " --latency-repeats {params.latency_repeats} --emissions {output.emissions}"
        " {params.emissions_flag} --country {params.country} --threads {threads} > {log} 2>&1"


# Causal language models only (requested by get_final_output when model.family is causal_lm):
# in-domain and out-of-domain perplexity of the baseline with each single decoder layer removed,
# the reference the criteria's per-layer scores are compared with.
rule evaluate_drop_one:
    input:
        model=rules.baseline_train.output.model,
    output:
        drop_one="results/{experiment}/baseline/drop_one.csv",
    log:
        "logs/evaluate_drop_one/{experiment}.log",
    benchmark:
        "benchmarks/evaluate_drop_one/{experiment}.tsv"
    conda:
        "../../envs/layerprune.yaml"
    threads: baseline_threads()
    params:
        data=as_json("data"),
        batch_size=lookup(dpath="evaluation/batch_size", within=config),
    message:
        "Perplexity of the {wildcards.experiment} baseline with each decoder layer removed"
    shell:
        "layerprune drop-one --model {input.model} --data {params.data:q} --batch-size {params.batch_size}"
        " --out {output.drop_one} --threads {threads} > {log} 2>&1"


# Latency and inference energy of every compared model, timed one after another in one job
# with the same threads. The job claims every core (threads) and the resource
# `timing_slot`, so no other job runs beside it: a model timed while other jobs share the CPU
# measures those jobs (models of one architecture ranged 8.7-50 ms per batch that way).
rule evaluate_latency:
    input:
        models=timed_models,
    output:
        latency=report(
            "results/{experiment}/latency/latency.csv",
            caption="../report/latency.rst",
            category="summary",
            labels={"table": "latency and inference energy (CSV)"},
        ),
    log:
        "logs/evaluate_latency/{experiment}.log",
    benchmark:
        "benchmarks/evaluate_latency/{experiment}.tsv"
    conda:
        "../../envs/layerprune.yaml"
    threads: exclusive_threads()
    resources:
        timing_slot=1,
        mem_mb=8000,
    params:
        evaluation=as_json("evaluation"),
        country=lookup(dpath="emissions/country_iso_code", within=config),
        emissions_flag=emissions_flag(),
    message:
        "Timing every compared model of {wildcards.experiment} one after another (no other job runs beside it)"
    shell:
        "layerprune latency --models {input.models} --evaluation {params.evaluation:q}"
        " --out {output.latency} {params.emissions_flag} --country {params.country} > {log} 2>&1"
