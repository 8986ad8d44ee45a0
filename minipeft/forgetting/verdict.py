"""The seeds' summary of notebook 06's runs, and the rule that judges the article's forgetting claim with it.

Notebooks 06 and 07 both read the verdict from here, so the claim has one rule.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def summarize(rows: Sequence[dict], keys: Sequence[str] = ("task_loss", "ppl_increase_pct", "slot_error_rate")
              ) -> list[dict]:
    """One row per label (in first-seen order): mean and sample standard deviation of ``keys`` over seeds."""
    out: dict[str, dict] = {}
    for row in rows:
        out.setdefault(row["label"], {"label": row["label"], "name": row["name"], "method": row["method"],
                                      "lr": row["lr"], "n": 0, "_values": {}})
        entry = out[row["label"]]
        entry["n"] += 1
        for k in keys:
            if k in row:
                entry["_values"].setdefault(k, []).append(row[k])
    for entry in out.values():
        for k, values in entry.pop("_values").items():
            entry[f"{k}_mean"] = statistics.fmean(values)
            entry[f"{k}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    return list(out.values())


def _rate_checked(summary: Sequence[dict], rate_summary: Sequence[dict]) -> dict[str, list[dict]]:
    """The settings of :func:`rate_checks`: ``{"recipe": rows of summary, "checked": rows of rate_summary}``."""
    names = {s["name"] for s in rate_summary}
    return {"recipe": [s for s in summary if s["name"] in names], "checked": list(rate_summary)}


def forgetting_by_rate(summary: Sequence[dict], rate_summary: Sequence[dict], stat: str = "mean"
                       ) -> dict[str, dict[str, float]]:
    """The perplexity increase (%) of each method's rate-checked setting: ``{"recipe": {method: ...}, "checked":
    {method: ...}}``, the same settings at the recipe's rate and at the rate of :func:`rate_checks`; its mean over
    the seeds, or with ``stat="std"`` their standard deviation."""
    key = f"ppl_increase_pct_{stat}"
    return {rate: {s["method"]: s[key] for s in rows} for rate, rows in _rate_checked(summary, rate_summary).items()}


def prefix_forgets_less(summary: Sequence[dict], rate_summary: Sequence[dict]) -> dict[str, bool | None]:
    """Per rate (``"recipe"``, ``"checked"``): does the prefix of :func:`rate_checks` raise general perplexity less
    than its LoRA setting? ``None`` where, over several seeds, the two means lie within their spread (stds added)."""
    answers: dict[str, bool | None] = {}
    for rate, rows in _rate_checked(summary, rate_summary).items():
        prefix, lora = (next(s for s in rows if s["method"] == m) for m in ("prefix", "lora"))
        gap = lora["ppl_increase_pct_mean"] - prefix["ppl_increase_pct_mean"]
        spread = prefix["ppl_increase_pct_std"] + lora["ppl_increase_pct_std"]
        answers[rate] = None if min(prefix["n"], lora["n"]) > 1 and abs(gap) <= spread else gap > 0
    return answers


def claim_verdict(prefix_less: dict[str, bool | None]) -> str:
    """The article's "prefix-tuning avoids forgetting better than LoRA", from :func:`prefix_forgets_less`:
    ``holds`` (less at both rates), ``does not hold`` (at neither), ``depends on the learning rate`` (at one),
    ``not settled`` (within the seeds' spread at a rate)."""
    answers = set(prefix_less.values())
    if None in answers:
        return "not settled"
    return "holds" if answers == {True} else "does not hold" if answers == {False} else "depends on the learning rate"
