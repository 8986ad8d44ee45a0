"""The forgetting lab shown: the table over seeds per rate, and the learn-vs-forget frontier plot."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
from matplotlib.colors import to_hex

METHOD_COLORS = {"full": "tab:red", "lora": "tab:blue", "prefix": "tab:green"}
LAB_COLORS = {"full": "tab:red", "lora r=8 qv": "tab:blue", "prefix P=10": "tab:green"}  # the main grid's settings


def frontier_table(records: Sequence[dict], settings: Sequence[str], text: str = "english") -> str:
    """One line per setting and rate: seeds, task loss, slot errors and forgetting (nats on ``text``), each mean
    [95% interval] over the seeds ("n/a (1 seed)" where one seed gives no interval)."""
    from .findings import front_of, runs_of

    lines = [f"{'setting':<16} {'lr':>8} {'seeds':>5} {'task loss [95% CI]':>24} {'SER %':>6} "
             f"{'forgetting, nats [95% CI]':>28}"]
    for setting in settings:
        for point in front_of(records, setting, text):
            sers = [r["ser"] for r in runs_of(records, setting) if r["lr"] == point.lr]
            loss, forgot = point.loss, point.forgot
            ser = 100 * sum(sers) / len(sers)
            lines.append(f"{setting:<16} {point.lr:>8.3g} {loss.n:>5} {loss.mean:>8.3f} {loss.bounds():>14} "
                         f"{ser:>6.1f} {forgot.mean:>+10.3f} {forgot.bounds('+.3f'):>16}")
    return "\n".join(lines)


def plot_frontiers(records: Sequence[dict], settings: Sequence[str], text: str = "english", ax=None,
                   live: Sequence[dict] = (), control: float | None = None, max_loss: float = 1.0):
    """Forgetting (nats on ``text``) against task loss, a point per rate with 95% intervals over the seeds, the
    Pareto front of each setting as a line; ``live`` runs as open circles; ``control`` (the prompt control) as a
    dashed line. Runs above ``max_loss`` (diverged) are left off the axes and counted in the title; a rate where
    only some seeds diverged gets no interval (it would span both outcomes): its other seeds show as dots, as a thin
    rate's do, with the mean of all its seeds hollow."""
    from .findings import MIN_SEEDS, front_means, front_of
    from .lab import forgetting_nats, setting_name

    ax = ax or plt.gca()
    fixed = {s: LAB_COLORS[s] for s in settings if s in LAB_COLORS}  # the main grid's colours, in every plot
    free = [c for c in plt.rcParams["axes.prop_cycle"].by_key()["color"]
            if to_hex(c) not in {to_hex(f) for f in fixed.values()}]
    colors = {**dict(zip([s for s in settings if s not in fixed], free, strict=False)), **fixed}
    off, labels = 0, []
    for setting in settings:
        front = front_of(records, setting, text)
        off += sum(loss > max_loss for p in front for loss in p.task_loss)
        for p in (p for p in front if p.loss.mean <= max_loss):
            if len(p.task_loss) >= MIN_SEEDS and max(p.task_loss) <= max_loss:
                ax.errorbar(p.loss.mean, p.forgot.mean, xerr=[[p.loss.mean - p.loss.low], [p.loss.high - p.loss.mean]],
                            yerr=[[p.forgot.mean - p.forgot.low], [p.forgot.high - p.forgot.mean]], fmt="o", ms=4,
                            color=colors[setting], capsize=2, lw=1)
            else:  # a t-interval over one or two seeds says little (t = 12.7 for two): show the seeds themselves
                kept = [(x, y) for x, y in zip(p.task_loss, p.forgetting, strict=True) if x <= max_loss]
                ax.plot(*zip(*kept, strict=True), ".", color=colors[setting], ms=4, alpha=0.5)
                ax.plot(p.loss.mean, p.forgot.mean, "o", color=colors[setting], ms=5, mfc="white")  # hollow: no CI
            labels.append(ax.annotate(f"{p.lr:.3g}", (p.loss.mean, p.forgot.mean), textcoords="offset points",
                                      xytext=(4, 3), fontsize=7, color=colors[setting], zorder=5,  # over the lines
                                      bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8}))
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
    ax.set_ylabel(f"forgetting on {text}\n(nats/token; up = forgot more)")
    ax.set_title(f"{text}: points = rates (labels), bars = 95% CI\n({MIN_SEEDS}+ seeds; fewer: small dots = the seeds)"
                 + (f"; {off} diverged run(s) off the axes" if off else ""), fontsize=9)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False)  # off the points
    spread_labels(ax, labels)
    return ax


def spread_labels(ax, labels: Sequence, gap_pt: float = 9.0) -> None:
    """Move rate labels down, one line at a time, where two points sit so close that their labels would print over
    each other (two prefix rates can land on almost the same spot)."""
    ax.autoscale_view()
    pt = ax.figure.dpi / 72  # pixels per point
    placed: list[tuple[float, float]] = []
    for label in sorted(labels, key=lambda a: -a.xy[1]):
        x, y = ax.transData.transform(label.xy) / pt  # the point, in points on the page
        dx, dy = label.get_position()
        while any(abs(x - px) < 4 * gap_pt and abs(y + dy - py) < gap_pt for px, py in placed):
            dy -= gap_pt
        label.set_position((dx, dy))
        placed.append((x, y + dy))
