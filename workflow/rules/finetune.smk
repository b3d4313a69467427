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
        gpu=1,
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


# Causal language models only (requested by get_final_output when model.family is causal_lm): the
# compared (healed, or pruned when healing is off) models in the standard format, save_pretrained
# (safetensors) beside the tokenizer, loadable with transformers' from_pretrained.
rule export_pretrained:
    input:
        model="results/{experiment}/{model}/model.pt",
    output:
        directory("results/{experiment}/{model}/pretrained"),
    log:
        "logs/export_pretrained/{experiment}/{model}.log",
    benchmark:
        "benchmarks/export_pretrained/{experiment}/{model}.tsv"
    conda:
        "../../envs/layerprune.yaml"
    message:
        "Saving {wildcards.model} of {wildcards.experiment} with save_pretrained"
    shell:
        "layerprune export-hf --model {input.model} --out {output} > {log} 2>&1"
