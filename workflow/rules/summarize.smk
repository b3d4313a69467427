# Summary: every result of the experiment in one tidy table, and the papers' main table.


rule summarize_results:
    input:
        unpack(summary_inputs),
    output:
        summary=report(
            "results/{experiment}/summary.csv",
            caption="../report/summary.rst",
            category="summary",
            labels={"table": "summary.csv"},
        ),
        table_md=report(
            "results/{experiment}/tables/main.md",
            caption="../report/main_table.rst",
            category="summary",
            labels={"table": "main (Markdown)"},
        ),
        table_tex=report(
            "results/{experiment}/tables/main.tex",
            caption="../report/main_table.rst",
            category="summary",
            labels={"table": "main (LaTeX)"},
        ),
        table_html=report(
            "results/{experiment}/tables/main.html",
            caption="../report/main_table.rst",
            category="summary",
            labels={"table": "main table (read here first)"},
        ),
    log:
        "logs/summarize_results/{experiment}.log",
    benchmark:
        "benchmarks/summarize_results/{experiment}.tsv"
    localrule: True
    conda:
        "../../envs/layerprune.yaml"
    params:
        baseline_optional=baseline_summary_flags,
    message:
        "Summarizing {wildcards.experiment}: one row per (method, budget, seed, stage) and the main table"
    shell:
        "layerprune summarize --baseline-metrics {input.baseline_metrics} {params.baseline_optional}"
        " --pruned-metrics {input.pruned_metrics} --plans {input.plans}"
        " --finetuned-metrics {input.finetuned_metrics} --finetune-emissions {input.finetune_emissions}"
        " --inference-emissions {input.inference_emissions}"
        " --pruned-inference-emissions {input.pruned_inference_emissions}"
        " --adversarial {input.adversarial} --corruptions {input.corruptions} --shortcut {input.shortcut}"
        " --latency {input.latency} --out {output.summary} --table-md {output.table_md}"
        " --table-tex {output.table_tex} --table-html {output.table_html} > {log} 2>&1"


rule report_config:
    output:
        config="results/{experiment}/config.yaml",
        page=report(
            "results/{experiment}/config.html",
            caption="../report/config.rst",
            category="config",
            labels={"file": "config (resolved)"},
        ),
    log:
        "logs/report_config/{experiment}.log",
    localrule: True
    conda:
        "../../envs/layerprune.yaml"
    params:
        config=json.dumps(config, sort_keys=True),
    message:
        "Recording the config {wildcards.experiment} ran with"
    shell:
        "layerprune config --json {params.config:q} --out {output.config} --html {output.page} > {log} 2>&1"
