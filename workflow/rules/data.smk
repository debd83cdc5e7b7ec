rule generate_data:
    output:
        f"{EXP}/data/hmm_sequences.parquet",
    log:
        f"{EXP}/logs/generate_data.log",
    conda:
        "../envs/hmmrnn.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        hmm=section("hmm"),
        data=section("data"),
        seed=seed_of("data"),
    script:
        "../scripts/generate_data.py"


rule experiment_config:
    output:
        f"{EXP}/config.json",
    log:
        f"{EXP}/logs/experiment_config.log",
    conda:
        "../envs/hmmrnn.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        config=lambda wildcards: experiment(wildcards).to_dict(),
    script:
        "../scripts/experiment_config.py"
