# layerprune: similarity-guided layer pruning as cached file artifacts.
# This file is a table of contents; stages live in workflow/rules/, helpers in common.smk.
from snakemake.utils import min_version

min_version("9.0")


# config.yaml is the quick default experiment. An experiment given with --configfile
# replaces it rather than being merged into it, so none of the quick run's settings
# (digits' image size, a few epochs) leak into a paper-scale run; to layer files, pass
# both: --configfile config.yaml mine.yaml. --config KEY=VALUE overrides either.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


# The wildcard vocabulary, always in this order in paths:
# results/{experiment}/<stage>/{method}/{budget}/seed{seed}/...
wildcard_constraints:
    experiment=EXPERIMENT,
    method=one_of(METHODS),
    budget=one_of(BUDGETS),
    seed=one_of(SEEDS),
    model=rf"baseline|(pruned|finetuned)/({one_of(METHODS)})/({one_of(BUDGETS)})/seed({one_of(SEEDS)})",


include: "workflow/rules/baseline.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/extract.smk"
include: "workflow/rules/similarity.smk"
include: "workflow/rules/segment.smk"
include: "workflow/rules/prune.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/robustness.smk"
include: "workflow/rules/summarize.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/shortcut.smk"


rule all:
    default_target: True
    input:
        get_final_output(),


# `snakemake figures`: regenerate only the figures and tables from existing results.
rule figures:
    input:
        f"{RESULTS}/summary.csv",
        f"{RESULTS}/tables/main.md",
        figure_targets(),
