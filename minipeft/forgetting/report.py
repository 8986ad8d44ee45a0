"""Notebook 06's results shown: the table over seeds and the learn-vs-forget plot."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt

from ..recipes import method_name


def format_summary(summary: Sequence[dict]) -> str:
    """A plain-text table of :func:`summarize`'s rows: mean ± std over the seeds."""
    lines = [f"{'setting':<20} {'lr':>7} {'seeds':>5} {'task loss':>15} {'general ppl +%':>17} {'slot errors %':>17}"]
    for s in summary:
        ser = (f"{100 * s['slot_error_rate_mean']:7.1f} ± {100 * s['slot_error_rate_std']:5.1f}"
               if "slot_error_rate_mean" in s else f"{'-':>15}")
        lines.append(f"{s['label']:<20} {s['lr']:>7.2g} {s['n']:>5} "
                     f"{s['task_loss_mean']:7.3f} ± {s['task_loss_std']:5.3f} "
                     f"{s['ppl_increase_pct_mean']:9.1f} ± {s['ppl_increase_pct_std']:5.1f} {ser:>17}")
    return "\n".join(lines)


METHOD_COLORS = {"full": "tab:red", "lora": "tab:blue", "prefix": "tab:green"}


def plot_learn_forget(summary: Sequence[dict], ax=None, title: str | None = None):
    """Learn-vs-forget (after Biderman et al. 2024): task loss (left = learned more) against perplexity increase,
    on a log scale above 10%; a dashed line joins one setting trained at several learning rates."""
    ax = ax or plt.gca()
    for name in dict.fromkeys(s["name"] for s in summary):
        same = sorted((s for s in summary if s["name"] == name), key=lambda s: s["lr"])
        if len(same) > 1:
            ax.plot([s["task_loss_mean"] for s in same], [s["ppl_increase_pct_mean"] for s in same], "--",
                    color=METHOD_COLORS[same[0]["method"]], lw=1)
    for s in summary:
        ax.errorbar(s["task_loss_mean"], s["ppl_increase_pct_mean"], xerr=s["task_loss_std"],
                    yerr=s["ppl_increase_pct_std"], fmt="o", color=METHOD_COLORS[s["method"]], capsize=3)
        ax.annotate(s["label"], (s["task_loss_mean"], s["ppl_increase_pct_mean"]), textcoords="offset points",
                    xytext=(5, 4), fontsize=8)
    for method, color in METHOD_COLORS.items():
        ax.plot([], [], "o", color=color, label=method_name(method))
    ax.axhline(0, color="grey", lw=0.8, ls=":")
    ax.set_yscale("symlog", linthresh=10)
    ys = [s["ppl_increase_pct_mean"] for s in summary]
    ax.set_ylim(min(0.0, 3 * min(ys)), 3 * max(10.0, max(ys)))  # no empty decades below zero; room for labels on top
    ax.invert_xaxis()  # right = lower task loss = learned more
    ax.set_xlabel("task validation loss (nats/token; right = learned more)")
    ax.set_ylabel("general-text perplexity increase (%; up = forgot more)")
    ax.set_title(title or "Learn vs forget: same task budget for every method")
    ax.legend(loc="best", fontsize=8)
    return ax
