rule train_rnn:
    input:
        data=rules.generate_data.output[0],
    output:
        model=f"{EXP}/models/lr_{{lr}}.pth",
        history=f"{EXP}/models/lr_{{lr}}.history.json",
    log:
        f"{EXP}/logs/train_rnn_lr_{{lr}}.log",
    conda:
        "../envs/hmmrnn.yaml"
    threads: threads_for("train", 2)
    resources:
        mem_mb=resource("train_mem_mb", 4000),
        runtime=resource("train_runtime", 240),
        gpu=resource("train_gpus", 0),
    params:
        rnn=section("rnn"),
        training=section("training"),
        learning_rate=learning_rate,
        seed=training_seed,
        # Resumable progress lives outside the declared outputs, so a preempted or killed
        # job restarts from its last checkpoint; the name changes with any training setting.
        checkpoint_dir=f"{EXP}/models/.checkpoints",
        device=config["device"],
    script:
        "../scripts/train_rnn.py"


rule select_model:
    input:
        models=candidates("model"),
        histories=candidates("history"),
    output:
        model=f"{EXP}/models/rnn.pth",
        results=f"{EXP}/training_results.json",
    log:
        f"{EXP}/logs/select_model.log",
    conda:
        "../envs/hmmrnn.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/select_model.py"


rule plot_loss_curves:
    input:
        histories=candidates("history"),
    output:
        report(
            f"{EXP}/figs/loss_curves.pdf",
            category="{experiment}",
            subcategory="Training",
            caption="../report/loss_curves.rst",
        ),
    log:
        f"{EXP}/logs/plot_loss_curves.log",
    conda:
        "../envs/hmmrnn.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        dpi=plot_setting("dpi"),
    script:
        "../scripts/plot_loss_curves.py"
