"""Drawing a sweep's plan: budget against parameters per family."""

from __future__ import annotations

from pathlib import Path

from aunet.sweeps.plan import Plan

FAMILY_COLORS = {"bpe": "#222222", "aunet1": "#9ecae1", "aunet2": "#4292c6", "aunet3": "#08519c", "aunet4": "#08306b"}


def plot_plan(plan: Plan, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    labels = sorted({(r.family, r.variant) for r in plan.runs})
    for i, (family, variant) in enumerate(labels):
        runs = [r for r in plan.runs if r.family == family and r.variant == variant]
        color = FAMILY_COLORS.get(family, f"C{i}")
        label = family + (f" ({variant})" if variant else "")
        axes[0].plot([r.budget_flops for r in runs], [r.params for r in runs], "o-", color=color, label=label)
        axes[1].plot([r.budget_flops for r in runs], [r.flops_per_byte for r in runs], "o-", color=color, label=label)
    axes[0].set(xscale="log", yscale="log", xlabel="compute budget (FLOPs)", ylabel="parameters",
                title="Model size per budget")
    axes[1].set(xscale="log", yscale="log", xlabel="compute budget (FLOPs)", ylabel="training FLOPs per byte",
                title="Cost per byte (same bytes for every family)")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Sweep plan: {plan.spec.name}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
