rule test_rnn:
    input:
        model=rules.select_model.output.model,
        data=rules.generate_data.output[0],
    output:
        summary=f"{EXP}/test_results.json",
        tables=f"{EXP}/test_results.parquet",
    log:
        f"{EXP}/logs/test_rnn.log",
    conda:
        "../envs/hmmrnn.yaml"
    threads: threads_for("test", 2)
    resources:
        mem_mb=resource("test_mem_mb", 4000),
        runtime=resource("test_runtime", 60),
    params:
        test=section("test"),
        seq_len=seq_len_for("test"),
        seed=seed_of("test"),
    script:
        "../scripts/test_rnn.py"


rule plot_test_figure:
    input:
        summary=rules.test_rnn.output.summary,
        tables=rules.test_rnn.output.tables,
    output:
        report(
            f"{EXP}/figs/{{figure}}.pdf",
            category="{experiment}",
            subcategory="HMM vs RNN",
            caption="../report/test_figure.rst",
        ),
    log:
        f"{EXP}/logs/plot_{{figure}}.log",
    conda:
        "../envs/hmmrnn.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        dpi=plot_setting("dpi"),
    script:
        "../scripts/plot_test_figure.py"
