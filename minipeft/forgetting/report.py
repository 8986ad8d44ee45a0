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


# ----------------------------------------------------------------------------- the forgetting lab
LAB_COLORS = {"full": "tab:red", "lora r=8 qv": "tab:blue", "prefix P=10": "tab:green"}


def frontier_table(records: Sequence[dict], settings: Sequence[str], text: str = "english") -> str:
    """One line per setting and rate: seeds, task loss, slot errors and forgetting (nats on ``text``), each mean
    [95% interval] over the seeds."""
    from .findings import front_of, runs_of

    lines = [f"{'setting':<16} {'lr':>8} {'seeds':>5} {'task loss [95% CI]':>24} {'SER %':>6} "
             f"{'forgetting, nats [95% CI]':>28}"]
    for setting in settings:
        for point in front_of(records, setting, text):
            sers = [r["ser"] for r in runs_of(records, setting) if r["lr"] == point.lr]
            loss, forgot = point.loss, point.forgot
            ser = 100 * sum(sers) / len(sers)
            lines.append(f"{setting:<16} {point.lr:>8.3g} {loss.n:>5} {loss.mean:>8.3f} "
                         f"[{loss.low:.3f}, {loss.high:.3f}] {ser:>6.1f} "
                         f"{forgot.mean:>+10.3f} [{forgot.low:+.3f}, {forgot.high:+.3f}]")
    return "\n".join(lines)


def plot_frontiers(records: Sequence[dict], settings: Sequence[str], text: str = "english", ax=None,
                   live: Sequence[dict] = (), control: float | None = None, max_loss: float = 1.0):
    """Forgetting (nats on ``text``) against task loss, a point per rate with 95% intervals over the seeds, the
    Pareto front of each setting as a line; ``live`` runs as open circles; ``control`` (the prompt control) as a
    dashed line. Runs above ``max_loss`` (diverged) are left off the axes and counted in the title."""
    from .findings import front_means, front_of
    from .lab import forgetting_nats, setting_name

    ax = ax or plt.gca()
    colors = dict(zip(settings, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False))
    colors.update({s: c for s, c in LAB_COLORS.items() if s in colors})
    off = 0
    for setting in settings:
        front = front_of(records, setting, text)
        shown = [p for p in front if p.loss.mean <= max_loss]
        off += len(front) - len(shown)
        for p in shown:
            ax.errorbar(p.loss.mean, p.forgot.mean, xerr=[[p.loss.mean - p.loss.low], [p.loss.high - p.loss.mean]],
                        yerr=[[p.forgot.mean - p.forgot.low], [p.forgot.high - p.forgot.mean]], fmt="o", ms=4,
                        color=colors[setting], capsize=2, lw=1)
            ax.annotate(f"{p.lr:.3g}", (p.loss.mean, p.forgot.mean), textcoords="offset points", xytext=(4, 3),
                        fontsize=7, color=colors[setting])
        xs, ys = zip(*front_means(front), strict=True) if front else ((), ())
        ax.plot(xs, ys, "-", color=colors[setting], lw=1.5, label=setting)
    for r in live:
        if r["task_loss"] <= max_loss and setting_name(r) in colors:
            ax.plot(r["task_loss"], forgetting_nats(r, text), "o", mfc="none", mec=colors[setting_name(r)], ms=10,
                    mew=1.5)
    if live:
        ax.plot([], [], "o", mfc="none", mec="grey", ms=10, label="live run (this notebook)")
    if control is not None:
        ax.axhline(control, color="grey", ls="--", lw=1, label="prompt control (no training)")
    ax.axhline(0, color="grey", lw=0.6, ls=":")
    ax.invert_xaxis()  # right = lower task loss = learned more
    ax.set_xlabel("task validation loss (nats/token; right = learned more)")
    ax.set_ylabel(f"forgetting on {text} (nats/token; up = forgot more)")
    ax.set_title(f"{text}: points = rates (labels), bars = 95% CI" + (f"; {off} diverged off the axes" if off else ""),
                 fontsize=9)
    ax.legend(fontsize=7, loc="best")
    return ax
