rule pca:
    input:
        model=rules.select_model.output.model,
    output:
        f"{EXP}/pca_results.npz",
    log:
        f"{EXP}/logs/pca.log",
    conda:
        "../envs/hmmrnn.yaml"
    threads: threads_for("reverse", 1)
    resources:
        mem_mb=2000,
        runtime=20,
    params:
        pca=section("reverse"),
        seq_len=seq_len_for("reverse"),
        seed=seed_of("reverse"),
    script:
        "../scripts/pca.py"


rule plot_latent_trajectory_2d:
    input:
        rules.pca.output[0],
    output:
        report(
            f"{EXP}/figs/latent_trajectory_2d.pdf",
            category="{experiment}",
            subcategory="Reverse engineering",
            caption="../report/latent_trajectory.rst",
        ),
    log:
        f"{EXP}/logs/plot_latent_trajectory_2d.log",
    conda:
        "../envs/hmmrnn.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        num_points=plot_setting("num_points_2d"),
        dpi=plot_setting("dpi"),
    script:
        "../scripts/plot_latent_trajectory_2d.py"


rule plot_latent_trajectory_3d:
    input:
        rules.pca.output[0],
    output:
        # plotly.js sits beside the HTML once instead of 4.6 MB inlined into every file.
        html=f"{EXP}/figs/latent_trajectory_3d.html",
        js=f"{EXP}/figs/plotly.min.js",
    log:
        f"{EXP}/logs/plot_latent_trajectory_3d.log",
    conda:
        "../envs/hmmrnn.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        num_points=plot_setting("num_points_3d"),
    script:
        "../scripts/plot_latent_trajectory_3d.py"
