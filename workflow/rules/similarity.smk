# Similarity: tidy tables of the unit-by-unit CKA matrix and of the intact-vs-bypassed
# distances of every removable unit for each of similarity.metrics (what Consensus votes over;
# the CKA criterion reads the representations).


rule similarity_tables:
    input:
        representations=rules.extract_activations.output.representations,
    output:
        matrix="results/{experiment}/similarity/unit_cka.csv",
        candidates="results/{experiment}/similarity/candidates.csv",
        heatmap=report(
            "results/{experiment}/similarity/unit_cka.png",
            caption="../report/unit_cka.rst",
            category="similarity",
            labels={"figure": "unit-by-unit CKA (baseline)"},
        ),
    log:
        "logs/similarity_tables/{experiment}.log",
    benchmark:
        "benchmarks/similarity_tables/{experiment}.tsv"
    conda:
        "../../envs/layerprune.yaml"
    params:
        metrics=consensus_metrics(),
    message:
        "Similarity tables of {wildcards.experiment}"
    shell:
        "layerprune similarity --representations {input.representations} --metrics {params.metrics}"
        " --matrix {output.matrix} --candidates {output.candidates} --heatmap {output.heatmap}"
        " > {log} 2>&1"
