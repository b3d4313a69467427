# Robustness: foolbox attacks, CIFAR-10-C corruptions and, when robustness.ood_sets lists them,
# the natural-shift test sets CIFAR-10.1/10.2. The corrupted test set is made (or, with
# cifar10c_root, loaded) once per experiment; every compared model (baseline, fine-tuned) is
# then evaluated on it.


rule robustness_corrupt_data:
    output:
        corrupted=temp("results/{experiment}/robustness/corrupted_test.npz"),
        grid=report(
            "results/{experiment}/robustness/corruption_examples.png",
            caption="../report/corruption_examples.rst",
            category="robustness",
            labels={"figure": "corruption examples"},
        ),
    log:
        "logs/robustness_corrupt_data/{experiment}.log",
    benchmark:
        "benchmarks/robustness_corrupt_data/{experiment}.tsv"
    conda:
        "../../envs/layerprune.yaml"
    params:
        data=as_json("data"),
        corruptions=" ".join(config["robustness"]["corruptions"]),
        severities=" ".join(str(s) for s in config["robustness"]["severities"]),
        size=lookup(dpath="robustness/corruption_size", within=config),
        seed=lookup(dpath="robustness/seed", within=config),
        cifar10c=cifar10c_flag(),
    message:
        "Corrupting the {wildcards.experiment} test subset (CIFAR-10-C protocol)"
    shell:
        "layerprune corrupt --data {params.data:q} --corruptions {params.corruptions}"
        " --severities {params.severities} --size {params.size} --seed {params.seed}"
        " {params.cifar10c} --out {output.corrupted} --grid {output.grid} > {log} 2>&1"


rule robustness_eval:
    input:
        model="results/{experiment}/{model}/model.pt",
        corrupted=corrupted_set_input,
    output:
        **({"ood": "results/{experiment}/robustness/{model}/ood.csv"} if config["robustness"]["ood_sets"] else {}),
        adversarial="results/{experiment}/robustness/{model}/adversarial.csv",
        corruptions="results/{experiment}/robustness/{model}/corruptions.csv",
        # only when natural-shift sets are configured, so the default outputs stay the same
    log:
        "logs/robustness_eval/{experiment}/{model}.log",
    benchmark:
        "benchmarks/robustness_eval/{experiment}/{model}.tsv"
    conda:
        "../../envs/layerprune.yaml"
    threads: fanout_threads()
    resources:
        mem_mb=8000,
    params:
        data=as_json("data"),
        attacks=json.dumps(config["robustness"]["attacks"]),
        size=lookup(dpath="robustness/size", within=config),
        seed=lookup(dpath="robustness/seed", within=config),
        batch_size=lookup(dpath="robustness/batch_size", within=config),
        corrupted=lambda wildcards, input: f"--corrupted {input.corrupted}" if input.corrupted else "",
        ood_sets=json.dumps(config["robustness"]["ood_sets"]),
        ood=lambda wildcards, output: f"--ood {output.ood}" if "ood" in output.keys() else "",
    message:
        "Robustness of {wildcards.experiment}/{wildcards.model}"
    shell:
        "layerprune robustness --model {input.model} --data {params.data:q} --attacks {params.attacks:q}"
        " --size {params.size} --seed {params.seed} --batch-size {params.batch_size}"
        " {params.corrupted} --adversarial {output.adversarial} --corruptions {output.corruptions}"
        " --ood-sets {params.ood_sets:q} {params.ood} --threads {threads} > {log} 2>&1"
