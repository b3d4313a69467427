# Fine-tuning (GPU when available) of every pruned model, with CodeCarbon tracking, then the
# clean evaluation of the fine-tuned model in the same job.


rule finetune_model:
    input:
        model=rules.prune_model.output.model,
    output:
        model="results/{experiment}/finetuned/{method}/{budget}/seed{seed}/model.pt",
        log_csv="results/{experiment}/finetuned/{method}/{budget}/seed{seed}/log.csv",
        emissions="results/{experiment}/finetuned/{method}/{budget}/seed{seed}/emissions_finetune.csv",
        metrics="results/{experiment}/finetuned/{method}/{budget}/seed{seed}/metrics.json",
        inference_emissions="results/{experiment}/finetuned/{method}/{budget}/seed{seed}/emissions_inference.csv",
    log:
        "logs/finetune_model/{experiment}/{method}/{budget}/seed{seed}.log",
    benchmark:
        "benchmarks/finetune_model/{experiment}/{method}/{budget}/seed{seed}.tsv"
    conda:
        "../../envs/layerprune.yaml"
    threads: fanout_threads()
    resources:
        gpu=gpus_per_job("finetune"),
        mem_mb=8000,
        runtime=360,
    params:
        data=as_json("data"),
        finetune=as_json("finetune"),
        evaluation=as_json("evaluation"),
        country=lookup(dpath="emissions/country_iso_code", within=config),
        emissions_flag=emissions_flag(),
        workdir=lambda wildcards, output: os.path.join(os.path.dirname(output.model), "train_state"),
    message:
        "Fine-tuning {wildcards.method}/{wildcards.budget}/seed{wildcards.seed} of {wildcards.experiment}"
    shell:
        "layerprune finetune --model {input.model} --data {params.data:q} --finetune {params.finetune:q}"
        " --seed {wildcards.seed} --out {output.model} --workdir {params.workdir}"
        " --log-csv {output.log_csv} --emissions {output.emissions} {params.emissions_flag}"
        " --metrics {output.metrics} --evaluation {params.evaluation:q}"
        " --inference-emissions {output.inference_emissions}"
        " --country {params.country} --threads {threads} > {log} 2>&1"
