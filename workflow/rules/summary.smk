rule summarize_experiment:
    input:
        config=rules.experiment_config.output[0],
        training=rules.select_model.output.results,
        test=rules.test_rnn.output.summary,
        pca=rules.pca.output[0],
    output:
        f"{EXP}/summary.json",
    log:
        f"{EXP}/logs/summarize_experiment.log",
    conda:
        "../envs/hmmrnn.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    script:
        "../scripts/summarize_experiment.py"


rule batch_results:
    input:
        summaries=expand(f"{EXP}/summary.json", experiment=sorted(EXPERIMENTS)),
    output:
        json=f"{RESULTS}/batch_results.json",
        table=report(
            f"{RESULTS}/batch_results.csv",
            category="Batch",
            caption="../report/batch_results.rst",
        ),
    log:
        f"{RESULTS}/logs/batch_results.log",
    conda:
        "../envs/hmmrnn.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    script:
        "../scripts/batch_results.py"


rule plot_batch_fidelity:
    input:
        rules.batch_results.output.json,
    output:
        report(
            f"{RESULTS}/batch_fidelity.pdf",
            category="Batch",
            caption="../report/batch_results.rst",
        ),
    log:
        f"{RESULTS}/logs/plot_batch_fidelity.log",
    conda:
        "../envs/hmmrnn.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        dpi=plot_setting("dpi"),
    script:
        "../scripts/plot_batch_fidelity.py"
