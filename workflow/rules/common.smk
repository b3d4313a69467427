# Helpers shared by the stage files: config validation, the wildcard vocabulary, params.
import json
import os
import sys

from snakemake.utils import validate


validate(config, schema="../schemas/config.schema.yaml")

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
    """Threads of compute rules: all cores of a workstation job, at most 16."""
    return max(1, min(workflow.cores, 16))


def emissions_flag():
    return "" if config["emissions"]["enabled"] else "--no-emissions"


def consensus_metrics():
    """Distances of the candidate table: the configured ones, always including cka."""
    metrics = config["similarity"]["metrics"]
    return " ".join(dict.fromkeys(["cka", *metrics]))


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


def compared_models():
    """Models whose robustness and cost the experiment compares."""
    return ["baseline", *pruned_models([final_stage()])]


def get_final_output():
    """Every artifact the default target builds."""
    stages = ["pruned", "finetuned"] if config["finetune"]["enabled"] else ["pruned"]
    models = ["baseline", *pruned_models(stages)]
    outputs = [
        f"{RESULTS}/similarity/unit_cka.csv",
        *[f"{RESULTS}/{model}/metrics.json" for model in models],
    ]
    if config["robustness"]["enabled"]:
        outputs += [f"{RESULTS}/robustness/{model}/adversarial.csv" for model in compared_models()]
    return outputs
