# Shortcut learning (config section shortcut, off by default; protocol in docs/shortcut.md): the baseline and
# every compared model are fine-tuned on the same biased training set (a class-keyed cue planted with
# probability rho, generated on the fly from (seed, index)), then evaluated on the clean, aligned and
# conflicting test sets. The figure draws aligned vs conflicting accuracy per criterion and budget.


rule shortcut_finetune:
    input:
        model="results/{experiment}/{model}/model.pt",
    output:
        model="results/{experiment}/shortcut/{model}/model.pt",
        log_csv="results/{experiment}/shortcut/{model}/log.csv",
    log:
        "logs/shortcut_finetune/{experiment}/{model}.log",
    benchmark:
        "benchmarks/shortcut_finetune/{experiment}/{model}.tsv"
    conda:
        "../../envs/layerprune.yaml"
    threads: fanout_threads()
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=360,
    params:
        data=as_json("data"),
        shortcut=as_json("shortcut"),
        finetune=json.dumps(config["shortcut"]["finetune"], sort_keys=True),
        seed=model_seed,
        workdir=lambda wildcards, output: os.path.join(os.path.dirname(output.model), "train_state"),
    message:
        "Fine-tuning {wildcards.experiment}/{wildcards.model} on the biased (shortcut) training set"
    shell:
        "layerprune finetune --model {input.model} --data {params.data:q} --finetune {params.finetune:q}"
        " --shortcut {params.shortcut:q} --seed {params.seed} --out {output.model} --workdir {params.workdir}"
        " --log-csv {output.log_csv} --threads {threads} > {log} 2>&1"


rule shortcut_eval:
    input:
        model=rules.shortcut_finetune.output.model,
    output:
        shortcut="results/{experiment}/robustness/{model}/shortcut.csv",
    log:
        "logs/shortcut_eval/{experiment}/{model}.log",
    benchmark:
        "benchmarks/shortcut_eval/{experiment}/{model}.tsv"
    conda:
        "../../envs/layerprune.yaml"
    threads: fanout_threads()
    resources:
        mem_mb=4000,
    params:
        data=as_json("data"),
        shortcut=as_json("shortcut"),
        batch_size=lookup(dpath="shortcut/batch_size", within=config),
    message:
        "Shortcut metrics (clean, aligned, conflicting accuracy) of {wildcards.experiment}/{wildcards.model}"
    shell:
        "layerprune shortcut --model {input.model} --data {params.data:q} --shortcut {params.shortcut:q}"
        " --batch-size {params.batch_size} --out {output.shortcut} --threads {threads} > {log} 2>&1"


rule figures_shortcut:
    input:
        summary=rules.summarize_results.output.summary,
    output:
        figure=report(
            "results/{experiment}/figures/shortcut.png",
            caption="../report/shortcut.rst",
            category="figures",
            subcategory="robustness",
            labels={"figure": "shortcut learning"},
        ),
        other_formats=figure_files("shortcut"),
    log:
        "logs/figures_shortcut/{experiment}.log",
    benchmark:
        "benchmarks/figures_shortcut/{experiment}.tsv"
    localrule: True
    conda:
        "../../envs/layerprune.yaml"
    params:
        formats=figure_formats(),
        dpi=lookup(dpath="figures/dpi", within=config),
        out_dir=lambda wildcards, output: os.path.dirname(output.figure),
    message:
        "Drawing aligned vs conflicting accuracy (shortcut learning) of {wildcards.experiment}"
    shell:
        "layerprune figures --summary {input.summary} --only shortcut"
        " --out-dir {params.out_dir} --formats {params.formats} --dpi {params.dpi} > {log} 2>&1"
