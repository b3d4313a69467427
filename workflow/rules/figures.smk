# Figures: drawn from result files only (summary.csv, CKA, segments, scores, robustness CSVs).
# Plotting settings live in config["figures"]; changing them reruns only these rules. PNG is always
# drawn (the report embeds it); figure_files() declares the other configured formats.


rule figures_results:
    input:
        summary=rules.summarize_results.output.summary,
        segments=rules.segment_layers.output.segments,
    output:
        accuracy=report(
            "results/{experiment}/figures/accuracy_vs_macs.png",
            caption="../report/accuracy_vs_macs.rst",
            category="figures",
            subcategory="accuracy",
            labels={"figure": "accuracy vs MAC reduction"},
        ),
        energy=report(
            "results/{experiment}/figures/energy.png",
            caption="../report/energy.rst",
            category="figures",
            subcategory="cost",
            labels={"figure": "inference and fine-tuning energy"},
        ),
        pareto=report(
            "results/{experiment}/figures/pareto.png",
            caption="../report/pareto.rst",
            category="figures",
            subcategory="cost",
            labels={"figure": "Pareto: accuracy vs latency and parameters"},
        ),
        removed=report(
            "results/{experiment}/figures/removed_units.png",
            caption="../report/removed_units.rst",
            category="figures",
            subcategory="pruning",
            labels={"figure": "removed units per method"},
        ),
        other_formats=figure_files("accuracy_vs_macs", "energy", "pareto", "removed_units"),
    log:
        "logs/figures_results/{experiment}.log",
    benchmark:
        "benchmarks/figures_results/{experiment}.tsv"
    localrule: True
    conda:
        "../../envs/layerprune.yaml"
    params:
        formats=figure_formats(),
        dpi=lookup(dpath="figures/dpi", within=config),
        out_dir=lambda wildcards, output: os.path.dirname(output.accuracy),
    message:
        "Drawing the accuracy, energy, Pareto and removed-units figures of {wildcards.experiment}"
    shell:
        "layerprune figures --summary {input.summary} --segments {input.segments}"
        " --only accuracy_vs_macs energy pareto removed_units"
        " --out-dir {params.out_dir} --formats {params.formats} --dpi {params.dpi} > {log} 2>&1"


rule figures_cka_heatmap:
    input:
        unpack(similarity_figure_inputs),
    output:
        cka=report(
            "results/{experiment}/figures/cka_segments.png",
            caption="../report/cka_segments.rst",
            category="figures",
            subcategory="similarity",
            labels={"figure": "CKA and segments"},
        ),
        scores=report(
            "results/{experiment}/figures/criterion_scores.png",
            caption="../report/criterion_scores.rst",
            category="figures",
            subcategory="similarity",
            labels={"figure": "criterion scores per unit"},
        ),
        other_formats=figure_files("cka_segments", "criterion_scores"),
    log:
        "logs/figures_cka_heatmap/{experiment}.log",
    benchmark:
        "benchmarks/figures_cka_heatmap/{experiment}.tsv"
    localrule: True
    conda:
        "../../envs/layerprune.yaml"
    params:
        budget=config["budgets"][0],
        formats=figure_formats(),
        dpi=lookup(dpath="figures/dpi", within=config),
        out_dir=lambda wildcards, output: os.path.dirname(output.cka),
    message:
        "Drawing the CKA heatmap with Fisher segments and the criteria's unit scores of {wildcards.experiment}"
    shell:
        "layerprune figures --cka {input.cka} --segments {input.segments} --scores {input.scores}"
        " --scores-budget {params.budget} --only cka_segments criterion_scores"
        " --out-dir {params.out_dir} --formats {params.formats} --dpi {params.dpi} > {log} 2>&1"


rule figures_robustness:
    input:
        unpack(robustness_figure_inputs),
    output:
        adversarial=report(
            "results/{experiment}/figures/robustness_adversarial.png",
            caption="../report/robustness_adversarial.rst",
            category="figures",
            subcategory="robustness",
            labels={"figure": "adversarial robustness"},
        ),
        corruptions=report(
            "results/{experiment}/figures/robustness_corruptions.png",
            caption="../report/robustness_corruptions.rst",
            category="figures",
            subcategory="robustness",
            labels={"figure": "corruption robustness"},
        ),
        other_formats=figure_files("robustness_adversarial", "robustness_corruptions"),
    log:
        "logs/figures_robustness/{experiment}.log",
    benchmark:
        "benchmarks/figures_robustness/{experiment}.tsv"
    localrule: True
    conda:
        "../../envs/layerprune.yaml"
    params:
        formats=figure_formats(),
        dpi=lookup(dpath="figures/dpi", within=config),
        out_dir=lambda wildcards, output: os.path.dirname(output.adversarial),
    message:
        "Drawing the adversarial and corruption robustness figures of {wildcards.experiment}"
    shell:
        "layerprune figures --adversarial {input.adversarial} --corruptions {input.corruptions}"
        " --only robustness_adversarial robustness_corruptions"
        " --out-dir {params.out_dir} --formats {params.formats} --dpi {params.dpi} > {log} 2>&1"


rule figures_compare:
    input:
        summary=rules.summarize_results.output.summary,
        others=compare_summaries,
    output:
        figure=report(
            "results/{experiment}/figures/compare_experiments.png",
            caption="../report/compare_experiments.rst",
            category="figures",
            subcategory="accuracy",
            labels={"figure": "experiments compared"},
        ),
        other_formats=figure_files("compare_experiments"),
    log:
        "logs/figures_compare/{experiment}.log",
    benchmark:
        "benchmarks/figures_compare/{experiment}.tsv"
    localrule: True
    conda:
        "../../envs/layerprune.yaml"
    params:
        formats=figure_formats(),
        dpi=lookup(dpath="figures/dpi", within=config),
        out_dir=lambda wildcards, output: os.path.dirname(output.figure),
    message:
        "Drawing {wildcards.experiment} beside the experiments in config figures/compare"
    shell:
        "layerprune figures --summary {input.summary} --compare {input.others} --only compare_experiments"
        " --out-dir {params.out_dir} --formats {params.formats} --dpi {params.dpi} > {log} 2>&1"


# Causal language models only: perplexity against decoder layers removed per criterion, and each
# criterion's per-layer scores beside the drop-one-layer perplexity.
rule figures_language:
    input:
        unpack(language_figure_inputs),
    output:
        perplexity=report(
            "results/{experiment}/figures/perplexity_vs_layers.png",
            caption="../report/perplexity_vs_layers.rst",
            category="figures",
            subcategory="accuracy",
            labels={"figure": "perplexity vs layers removed"},
        ),
        drop_one=report(
            "results/{experiment}/figures/scores_vs_drop_one.png",
            caption="../report/scores_vs_drop_one.rst",
            category="figures",
            subcategory="similarity",
            labels={"figure": "criterion scores vs drop-one perplexity"},
        ),
        other_formats=figure_files("perplexity_vs_layers", "scores_vs_drop_one"),
    log:
        "logs/figures_language/{experiment}.log",
    benchmark:
        "benchmarks/figures_language/{experiment}.tsv"
    localrule: True
    conda:
        "../../envs/layerprune.yaml"
    params:
        budget=config["budgets"][0],
        formats=figure_formats(),
        dpi=lookup(dpath="figures/dpi", within=config),
        out_dir=lambda wildcards, output: os.path.dirname(output.perplexity),
    message:
        "Drawing the perplexity figures of {wildcards.experiment}"
    shell:
        "layerprune figures --summary {input.summary} --drop-one {input.drop_one} --scores {input.scores}"
        " --scores-budget {params.budget} --only perplexity_vs_layers scores_vs_drop_one"
        " --out-dir {params.out_dir} --formats {params.formats} --dpi {params.dpi} > {log} 2>&1"
