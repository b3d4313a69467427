# Baseline: the unpruned model, trained (GPU when available) or imported.


rule baseline_train:
    output:
        model="results/{experiment}/baseline/model.pt",
        log_csv="results/{experiment}/baseline/train_log.csv",
        emissions="results/{experiment}/baseline/emissions_train.csv",
    log:
        "logs/baseline_train/{experiment}.log",
    benchmark:
        "benchmarks/baseline_train/{experiment}.tsv"
    conda:
        "../../envs/layerprune.yaml"
    threads: baseline_threads()
    resources:
        gpu=gpus_per_job("train"),
        mem_mb=8000,
        runtime=720,
    params:
        data=as_json("data"),
        model=as_json("model"),
        train=as_json("train"),
        seed=config["seeds"][0],
        country=lookup(dpath="emissions/country_iso_code", within=config),
        emissions_flag=emissions_flag(),
        workdir=lambda wildcards, output: os.path.join(os.path.dirname(output.model), "train_state"),
    message:
        "Training (or importing) the unpruned model of {wildcards.experiment} (model.family {config[model][family]})"
    shell:
        "layerprune baseline --data {params.data:q} --model {params.model:q} --train {params.train:q}"
        " --seed {params.seed} --out {output.model} --workdir {params.workdir}"
        " --log-csv {output.log_csv} --emissions {output.emissions} {params.emissions_flag}"
        " --country {params.country} --threads {threads} > {log} 2>&1"
