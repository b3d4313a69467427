# Extraction: one pass over the calibration subset that stores intact and (unless
# similarity.bypassed_features is false) bypassed penultimate features, the cka criterion's
# streamed CKA of each bypass, unit input/output cosines and the unit-by-unit CKA matrix.


rule extract_activations:
    input:
        model=rules.baseline_train.output.model,
    output:
        representations="results/{experiment}/activations/representations.npz",
    log:
        "logs/extract_activations/{experiment}.log",
    benchmark:
        "benchmarks/extract_activations/{experiment}.tsv"
    conda:
        "../../envs/layerprune.yaml"
    threads: baseline_threads()
    resources:
        mem_mb=8000,
    params:
        data=as_json("data"),
        size=lookup(dpath="calibration/size", within=config),
        batch_size=lookup(dpath="calibration/batch_size", within=config),
        seed=lookup(dpath="calibration/seed", within=config),
        mode=lookup(dpath="similarity/mode", within=config),
        sglp_batch=lookup(dpath="similarity/sglp_batch", within=config),
        precision=lookup(dpath="similarity/precision", within=config),
        bypassed=bypassed_features_flag(),
    message:
        "Extracting calibration representations of the {wildcards.experiment} baseline"
    shell:
        "layerprune extract --model {input.model} --data {params.data:q} --size {params.size}"
        " --batch-size {params.batch_size} --seed {params.seed} --mode {params.mode}"
        " --sglp-batch {params.sglp_batch} --precision {params.precision} {params.bypassed}"
        " --out {output.representations}"
        " --threads {threads} > {log} 2>&1"
