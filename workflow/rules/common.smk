# Helpers shared by all rule files: config validation, wildcard vocabulary, paths, params.
import json
import os
import sys

from snakemake.utils import validate


validate(config, schema="../schemas/config.schema.yaml")

# Rules call the `layerprune` command of the environment running Snakemake (a venv need
# not be activated); with --software-deployment-method conda the rule's env comes first.
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")

EXPERIMENT = config["experiment"]
RESULTS = f"results/{EXPERIMENT}"


wildcard_constraints:
    experiment=EXPERIMENT,


def as_json(section):
    """A config section as a JSON string, passed to the CLI as one flag (quoted with :q)."""
    return json.dumps(config[section], sort_keys=True)


def baseline_threads():
    return max(1, min(workflow.cores, 16))


def get_final_output():
    """Every artifact the default target builds."""
    return [
        f"{RESULTS}/baseline/metrics.json",
    ]
