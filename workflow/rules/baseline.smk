# Baseline: the unpruned model, trained (GPU when available) or imported, then evaluated.


rule baseline_train:
    message:
        "Training (or importing) the unpruned {config[model][arch]} for {wildcards.experiment}"
    output:
        model="results/{experiment}/baseline/model.pt",
        log_csv="results/{experiment}/baseline/train_log.csv",
        emissions="results/{experiment}/baseline/emissions_train.csv",
    params:
        data=as_json("data"),
        model=as_json("model"),
        train=as_json("train"),
        seed=config["seeds"][0],
        country=lookup(dpath="emissions/country_iso_code", within=config),
        emissions_flag="" if config["emissions"]["enabled"] else "--no-emissions",
        workdir=lambda wildcards, output: os.path.join(os.path.dirname(output.model), "train_state"),
    threads: baseline_threads()
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=720,
    log:
        "logs/baseline_train/{experiment}.log",
    benchmark:
        "benchmarks/baseline_train/{experiment}.tsv"
    conda:
        "../../envs/layerprune.yaml"
    shell:
        "layerprune baseline --data {params.data:q} --model {params.model:q} --train {params.train:q}"
        " --seed {params.seed} --out {output.model} --workdir {params.workdir}"
        " --log-csv {output.log_csv} --emissions {output.emissions} {params.emissions_flag}"
        " --country {params.country} --threads {threads} > {log} 2>&1"


rule baseline_evaluate:
    message:
        "Evaluating the unpruned model of {wildcards.experiment}"
    input:
        model=rules.baseline_train.output.model,
    output:
        metrics="results/{experiment}/baseline/metrics.json",
        emissions="results/{experiment}/baseline/emissions_inference.csv",
    params:
        data=as_json("data"),
        batch_size=lookup(dpath="evaluation/batch_size", within=config),
        latency_batch_size=lookup(dpath="evaluation/latency_batch_size", within=config),
        latency_repeats=lookup(dpath="evaluation/latency_repeats", within=config),
        country=lookup(dpath="emissions/country_iso_code", within=config),
        emissions_flag="" if config["emissions"]["enabled"] else "--no-emissions",
    threads: baseline_threads()
    log:
        "logs/baseline_evaluate/{experiment}.log",
    benchmark:
        "benchmarks/baseline_evaluate/{experiment}.tsv"
    conda:
        "../../envs/layerprune.yaml"
    shell:
        "layerprune evaluate --model {input.model} --data {params.data:q} --out {output.metrics}"
        " --batch-size {params.batch_size} --latency-batch-size {params.latency_batch_size}"
        " --latency-repeats {params.latency_repeats} --emissions {output.emissions}"
        " {params.emissions_flag} --country {params.country} --threads {threads} > {log} 2>&1"
