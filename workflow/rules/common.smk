# Helpers shared by the stage files: config validation, the wildcard vocabulary, params.
import json
import os
import re
import shlex
import sys

from snakemake.exceptions import WorkflowError

from layerprune.checks import check_inputs
from layerprune.config import ConfigError, check_profile_resources, validate_config
from layerprune.criteria import CALIBRATION, CANDIDATES, get_criterion
from layerprune.criteria.protocols import effective_pruning

# The schema (workflow/schemas/config.schema.yaml) with its defaults filled in, one line per bad key (Snakemake's
# validate() prints the whole schema), and what it cannot check (attack params, robustness data, a causal LM's
# files and tokenizer, the shortcut cue).
config.update(validate_config(config))
# What the config names: checkpoint, data files, budgets, seeds, country (remembered once passed). Not under
# --lint, which checks the workflow's code for every config in configs/, on machines without their data.
if "--lint" not in sys.argv:
    check_inputs(config, cache_dir=".snakemake/layerprune")
try:  # a profile's EDIT_ME placeholders (profiles/slurm) stop every run, a dry run included
    check_profile_resources(
        workflow.resource_settings.default_resources.args if workflow.resource_settings.default_resources else [],
        workflow.resource_settings.overwrite_resources or {},
    )
except ConfigError as err:
    raise WorkflowError(str(err)) from None

# Rules call the `layerprune` command of the environment running Snakemake (a venv need
# not be activated); with --software-deployment-method conda the rule's env comes first.
os.environ.update(PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))

EXPERIMENT = config["experiment"]
RESULTS = f"results/{EXPERIMENT}"
METHODS = config["methods"]
BUDGETS = config["budgets"]
SEEDS = config["seeds"]


def one_of(values):
    """A wildcard constraint matching exactly the configured values."""
    return "|".join(str(v) for v in values)


def as_json(section):
    """A config section as a JSON string, passed to the CLI as one flag (quoted with :q)."""
    return json.dumps(config[section], sort_keys=True)


def baseline_threads():
    """Threads of the single heavy jobs (baseline training, extraction): all cores of a local
    run (at most 16); on a cluster, where Snakemake has no core count, 8 (profiles/slurm sets
    each rule's threads)."""
    try:
        cores = workflow.cores
    except WorkflowError:  # cluster executors run without --cores
        return 8
    return max(1, min(cores, 16))


def exclusive_threads():
    """Threads of the timing step: every core of a local run, so that Snakemake runs nothing
    beside it (its torch threads are evaluation.latency_threads); on a cluster, where there
    is no core count, the job gets its own allocation (profiles/slurm asks for --exclusive)."""
    try:
        return max(1, workflow.cores)
    except WorkflowError:
        return 8


def fanout_threads():
    """Threads of the rules that run once per (method, budget, seed) or per model: a quarter
    of the cores, so that several run side by side. These jobs are short and spend much of
    their time starting Python and torch on one core, so job parallelism beats intra-op
    threads (the default workflow on 2 cores: 1,053 s with every job on both cores)."""
    return max(1, baseline_threads() // 4)


def gpus_per_job(section):
    """GPUs of one training job: the section's (train or finetune) devices, which the trainer
    runs as that many data-parallel processes (torchrun, one node); the SLURM executor turns the
    rule's `gpu` resource into --gpus=N."""
    return config[section]["devices"]


def emissions_flag():
    return "" if config["emissions"]["enabled"] else "--no-emissions"


def bypassed_features_flag():
    """The extract command's flag for similarity.bypassed_features (empty: keep them)."""
    return "" if config["similarity"]["bypassed_features"] else "--no-bypassed-features"


def consensus_metrics():
    """Distances of the candidate table, which Consensus votes over: exactly similarity.metrics
    (the cka criterion reads the representations, not this table)."""
    return " ".join(config["similarity"]["metrics"])


def prune_inputs(wildcards):
    """The baseline and exactly the artifacts the criterion's registry record reads (so that, e.g.,
    changing pruning.segments reruns only the criteria that select per segment)."""
    criterion = get_criterion(wildcards.method)
    artifacts = {
        "representations": rules.extract_activations.output.representations,
        "candidates": rules.similarity_tables.output.candidates,
        "segments": rules.segment_layers.output.segments,
    }
    pruning = effective_pruning(config["pruning"], wildcards.method)
    reads = [name for name in criterion.stage_inputs(pruning) if name in artifacts]
    paths = {"model": rules.baseline_train.output.model, **{name: artifacts[name] for name in reads}}
    return {name: path.format(experiment=wildcards.experiment) for name, path in paths.items()}


def prune_settings(wildcards):
    """The keys of the pruning section the criterion reads, as JSON (another key's change reruns none of its jobs)."""
    pruning = effective_pruning(config["pruning"], wildcards.method)
    keys = get_criterion(wildcards.method).pruning_keys(pruning)
    settings = {key: pruning[key] for key in keys}
    if wildcards.method in pruning["protocol"]:  # the criteria with a paper protocol (docs/fidelity.md)
        settings["protocol"] = {wildcards.method: pruning["protocol"][wildcards.method]}
    return json.dumps(settings, sort_keys=True)


def prune_reads(wildcards, input):
    """The prune command's flags of the inputs and sections the criterion reads: its artifacts, the
    candidate table's metrics, its similarity settings (cka: precision), the calibration section, and the finetune section only when it
    fine-tunes between iterative steps (then without epochs, which pruning.finetune_epochs_between
    sets, and enabled)."""
    criterion = get_criterion(wildcards.method)
    pruning = effective_pruning(config["pruning"], wildcards.method)
    reads = criterion.stage_inputs(pruning)
    flags = [f"--{name} {input[name]}" for name in reads if name in input.keys()]
    if CANDIDATES in reads:
        flags.append(f"--consensus-metrics {consensus_metrics()}")
    for key in criterion.similarity_settings:
        flags.append(f"--{key.replace('_', '-')} {config['similarity'][key]}")
    if CALIBRATION in reads:
        flags.append(f"--calibration {shlex.quote(as_json('calibration'))}")
    if criterion.reads_finetune(pruning):
        settings = {k: v for k, v in config["finetune"].items() if k not in ("enabled", "epochs")}
        flags.append(f"--finetune {shlex.quote(json.dumps(settings, sort_keys=True))}")
    return " ".join(flags)


def final_stage():
    """The stage whose models are compared: fine-tuned, or pruned when fine-tuning is off."""
    return "finetuned" if config["finetune"]["enabled"] else "pruned"


def pruned_models(stages=("pruned",)):
    """Model folders (relative to results/<experiment>) of every (stage, method, budget, seed)."""
    return [
        f"{stage}/{method}/{budget}/seed{seed}"
        for stage in stages
        for method in METHODS
        for budget in BUDGETS
        for seed in SEEDS
    ]


def cifar10c_flag():
    root = config["robustness"]["cifar10c_root"]
    return f"--cifar10c-root {root}" if root else ""


def corrupted_set_input(wildcards):
    """The shared corrupted test set, or nothing when no corruption is configured."""
    if not config["robustness"]["corruptions"]:
        return []
    return f"results/{wildcards.experiment}/robustness/corrupted_test.npz"


def model_seed(wildcards):
    """The seed of a model folder (its seed<N> part), or the first configured seed for the baseline."""
    match = re.search(r"seed(\d+)$", wildcards.model)
    return int(match.group(1)) if match else SEEDS[0]


def compared_models():
    """Models whose robustness and cost the experiment compares."""
    return ["baseline", *pruned_models([final_stage()])]


def timed_models(wildcards):
    """model.pt of every compared model, timed together by evaluate_latency."""
    return [f"{RESULTS}/{model}/model.pt" for model in compared_models()]


def runs(stage, name):
    """One file of every (method, budget, seed) run of a stage folder."""
    return [f"{RESULTS}/{model}/{name}" for model in pruned_models([stage])]


def summary_inputs(wildcards):
    """Files of summarize_results; a disabled stage contributes an empty list."""
    finetune, robust = config["finetune"]["enabled"], robustness_applies()
    shortcut = config["shortcut"]["enabled"]
    final = final_stage()
    return {
        "baseline_metrics": f"{RESULTS}/baseline/metrics.json",
        # the timing step feeds random images: not for causal language models (their latency is in metrics.json)
        "latency": [] if language_model() else [f"{RESULTS}/latency/latency.csv"],
        "baseline_train_emissions": f"{RESULTS}/baseline/emissions_train.csv",
        "baseline_inference_emissions": f"{RESULTS}/baseline/emissions_inference.csv",
        "baseline_adversarial": [f"{RESULTS}/robustness/baseline/adversarial.csv"] if robust else [],
        "baseline_corruptions": [f"{RESULTS}/robustness/baseline/corruptions.csv"] if robust else [],
        "pruned_metrics": runs("pruned", "metrics.json"),
        "plans": runs("pruned", "plan.json"),
        "finetuned_metrics": runs("finetuned", "metrics.json") if finetune else [],
        "finetune_emissions": runs("finetuned", "emissions_finetune.csv") if finetune else [],
        "inference_emissions": runs("finetuned", "emissions_inference.csv") if finetune else [],
        "pruned_inference_emissions": runs("pruned", "emissions_inference.csv"),
        "adversarial": runs(f"robustness/{final}", "adversarial.csv") if robust else [],
        "corruptions": runs(f"robustness/{final}", "corruptions.csv") if robust else [],
        "baseline_shortcut": [f"{RESULTS}/robustness/baseline/shortcut.csv"] if shortcut else [],
        "shortcut": runs(f"robustness/{final}", "shortcut.csv") if shortcut else [],
    }


def baseline_summary_flags(wildcards, input):
    """The optional baseline flags of `layerprune summarize`, for the baseline files that are inputs."""
    flags = {
        "baseline_train_emissions": "--baseline-train-emissions",
        "baseline_inference_emissions": "--baseline-inference-emissions",
        "baseline_adversarial": "--baseline-adversarial",
        "baseline_corruptions": "--baseline-corruptions",
        "baseline_shortcut": "--baseline-shortcut",
    }
    return " ".join(
        f"{flag} {input[key] if isinstance(input[key], str) else input[key][0]}"
        for key, flag in flags.items()
        if len(input.get(key, [])) > 0
    )


def similarity_figure_inputs(wildcards):
    budget, seed = BUDGETS[0], SEEDS[0]
    return {
        "cka": f"{RESULTS}/similarity/unit_cka.csv",
        "segments": f"{RESULTS}/segments/segments.json",
        "scores": [f"{RESULTS}/pruned/{method}/{budget}/seed{seed}/scores.csv" for method in METHODS],
    }


def robustness_figure_inputs(wildcards):
    models = compared_models()
    return {
        "adversarial": [f"{RESULTS}/robustness/{model}/adversarial.csv" for model in models],
        "corruptions": [f"{RESULTS}/robustness/{model}/corruptions.csv" for model in models],
    }


def compare_summaries(wildcards):
    return [f"results/{name}/summary.csv" for name in config["figures"]["compare"]]


def figure_formats():
    """PNG (embedded in the report) plus the configured formats, for --formats."""
    return ["png"] + [f for f in config["figures"]["formats"] if f != "png"]


def figure_files(*names):
    """The non-PNG files of these figures in the configured formats."""
    return [
        f"results/{{experiment}}/figures/{name}.{fmt}"
        for name in names
        for fmt in config["figures"]["formats"]
        if fmt != "png"
    ]


def language_model():
    """True for model.family causal_lm (decoder layers of a causal language model)."""
    return config["model"]["family"] == "causal_lm"


def robustness_applies():
    """Adversarial attacks and image corruptions apply to image classifiers only: for a causal
    language model the robustness stages are skipped (its out-of-distribution evaluation is the
    perplexity on data.ood_text, in every metrics.json)."""
    return config["robustness"]["enabled"] and not language_model()


def language_figure_inputs(wildcards):
    return {
        "summary": f"{RESULTS}/summary.csv",
        "drop_one": f"{RESULTS}/baseline/drop_one.csv",
        "scores": similarity_figure_inputs(wildcards)["scores"],
    }


def figure_targets():
    """The PNG of every figure the experiment draws."""
    names = ["accuracy_vs_macs", "removed_units", "energy", "pareto", "cka_segments", "criterion_scores"]
    if robustness_applies():
        names += ["robustness_adversarial", "robustness_corruptions"]
    if language_model():
        names += ["perplexity_vs_layers", "scores_vs_drop_one"]
    if config["shortcut"]["enabled"]:
        names.append("shortcut")
    if config["figures"]["compare"]:
        names.append("compare_experiments")
    return [f"{RESULTS}/figures/{name}.png" for name in names]


def get_final_output():
    """Every artifact the default target builds."""
    stages = ["pruned", "finetuned"] if config["finetune"]["enabled"] else ["pruned"]
    models = ["baseline", *pruned_models(stages)]
    outputs = [
        f"{RESULTS}/similarity/unit_cka.csv",
        *[f"{RESULTS}/{model}/metrics.json" for model in models],
    ]
    if robustness_applies():
        outputs += [f"{RESULTS}/robustness/{model}/adversarial.csv" for model in compared_models()]
    if language_model():
        outputs.append(f"{RESULTS}/baseline/drop_one.csv")
        outputs += [f"{RESULTS}/{model}/pretrained" for model in pruned_models([final_stage()])]
    if config["shortcut"]["enabled"]:
        outputs += [f"{RESULTS}/robustness/{model}/shortcut.csv" for model in compared_models()]
    outputs += [f"{RESULTS}/summary.csv", f"{RESULTS}/tables/main.md", f"{RESULTS}/config.html", *figure_targets()]
    return outputs
