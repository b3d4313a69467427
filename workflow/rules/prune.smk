# Pruning: for every configured criterion, budget and seed, score the removable units,
# (reading only what the criterion's registry record says it reads: prune_inputs, prune_reads),
# select under the budget (plan saved first), physically remove them, and evaluate the
# pruned model before fine-tuning (in the same job: a second process per model would cost
# more than the evaluation itself).


rule prune_model:
    input:
        unpack(prune_inputs),
    output:
        scores="results/{experiment}/pruned/{method}/{budget}/seed{seed}/scores.csv",
        plan="results/{experiment}/pruned/{method}/{budget}/seed{seed}/plan.json",
        model="results/{experiment}/pruned/{method}/{budget}/seed{seed}/model.pt",
        metrics="results/{experiment}/pruned/{method}/{budget}/seed{seed}/metrics.json",
        emissions="results/{experiment}/pruned/{method}/{budget}/seed{seed}/emissions_inference.csv",
    log:
        "logs/prune_model/{experiment}/{method}/{budget}/seed{seed}.log",
    benchmark:
        "benchmarks/prune_model/{experiment}/{method}/{budget}/seed{seed}.tsv"
    conda:
        "../../envs/layerprune.yaml"
    threads: fanout_threads()
    resources:
        mem_mb=8000,
    params:
        data=as_json("data"),
        pruning=prune_settings,
        reads=prune_reads,
        evaluation=as_json("evaluation"),
        country=lookup(dpath="emissions/country_iso_code", within=config),
        emissions_flag=emissions_flag(),
    message:
        "Pruning {wildcards.experiment} with {wildcards.method} at {wildcards.budget} (seed {wildcards.seed})"
    shell:
        "layerprune prune --model {input.model} --method {wildcards.method} --budget {wildcards.budget}"
        " --seed {wildcards.seed} --pruning {params.pruning:q} --data {params.data:q} {params.reads}"
        " --scores {output.scores}"
        " --plan {output.plan} --out {output.model} --metrics {output.metrics}"
        " --evaluation {params.evaluation:q} --inference-emissions {output.emissions}"
        " {params.emissions_flag} --country {params.country} --threads {threads} > {log} 2>&1"
