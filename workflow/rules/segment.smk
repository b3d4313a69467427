# Segmentation: Fisher optimal contiguous segments of the units from their CKA rows (SGLP);
# with segments: auto, the fewest segments leaving at most segment_threshold of the spread.


rule segment_layers:
    input:
        representations=rules.extract_activations.output.representations,
    output:
        segments="results/{experiment}/segments/segments.json",
    log:
        "logs/segment_layers/{experiment}.log",
    benchmark:
        "benchmarks/segment_layers/{experiment}.tsv"
    localrule: True
    conda:
        "../../envs/layerprune.yaml"
    params:
        segments=lookup(dpath="pruning/segments", within=config),
        threshold=lookup(dpath="pruning/segment_threshold", within=config),
        protocol=lookup(dpath="pruning/protocol/sglp", within=config),
    message:
        "Fisher segmentation of the units of {wildcards.experiment}"
    shell:
        "layerprune segment --representations {input.representations}"
        " --segments {params.segments} --threshold {params.threshold} --protocol {params.protocol}"
        " --out {output.segments} > {log} 2>&1"
