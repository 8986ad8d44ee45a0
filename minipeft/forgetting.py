"""Catastrophic forgetting, measured: what fine-tuning on the restaurant task costs the model elsewhere.

"Forgetting" is read the way Biderman et al. (2024, "LoRA Learns Less and Forgets Less") read it: train
each method with the same task budget, then measure

- **learning**: the task's validation loss (and slot error rate) after training, and
- **forgetting**: the increase of the model's perplexity on general text it never trained on
  (:func:`general_text`: the mini GPT-2's held-out Shakespeare offline, WikiText-2 for real GPT-2),

with the adapter *switched on*, because that is the model one deploys. A few fixed generation probes
show the same thing in words. Typical use::

    blocks = text_blocks(general_text(profile)[0], tokenizer, block_len=128, n_blocks=32)
    row = run_setting(Setting("lora", r=4), base, train_loader, val_loader, blocks, steps=200, lr=3e-3)
    row["ppl_before"], row["ppl_after"], row["task_loss"]

Results travel between notebooks as small JSON files in ``results/`` at the repository root (ignored by
git; ``MINIPEFT_RESULTS_DIR`` moves it): :func:`save_results` writes one, :func:`load_results` reads it
back only if it was made with the same profile.
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from datasets import load_dataset
from torch import nn
from torch.utils.data import DataLoader

from .corpus import heldout_text
from .lora import apply_lora
from .memory import PeakEstimate, training_peak
from .metrics import perplexity, slot_error_rate
from .notebook import seed_everything
from .params import count_parameters, gpt2_config, gpt2_parameter_count, prefix_parameter_count
from .paths import REPO_ROOT
from .prefix import PrefixTuningModel
from .profiles import PROFILES, Profile, get_profile
from .recipes import LORA_TARGETS, RECIPES, lora_targets, recipe_for
from .train import continuations, evaluate_loss, generate_texts, train

RESULTS_DIR = Path(os.environ.get("MINIPEFT_RESULTS_DIR", REPO_ROOT / "results"))
PROBES = ("The king hath", "I pray you, sir,", "What is the matter", "Good morrow, my lord.")
WIKITEXT = ("Salesforce/wikitext", "wikitext-2-raw-v1")
METHOD_NAMES = {"full": "full fine-tuning", "lora": "LoRA", "prefix": "prefix-tuning"}  # as minipeft.recipes names them


# ----------------------------------------------------------------------------- general-English perplexity
def general_text(profile: str | Profile | None = None) -> tuple[str, str]:
    """``(text, source)``: general English the base model did not train on.

    The offline mini GPT-2 gets its held-out plays (:func:`minipeft.corpus.heldout_text`); real GPT-2 gets
    WikiText-2's test split from the Hub, falling back to the held-out plays (with a clear source name) offline.
    """
    profile = get_profile(profile)
    if profile.base_model == "mini-gpt2":
        return heldout_text(), "held-out Shakespeare (Macbeth, Twelfth Night): never in the mini GPT-2's pretraining"
    try:
        rows = load_dataset(*WIKITEXT, split="test")["text"]
        return "".join(rows), "WikiText-2 test split (Wikipedia articles)"
    except Exception as err:  # offline, or the Hub refused: say so in one line, not a traceback
        return heldout_text(), f"held-out Shakespeare (WikiText-2 unavailable: {type(err).__name__})"


def text_blocks(text: str, tokenizer, block_len: int, n_blocks: int) -> torch.Tensor:
    """``n_blocks`` non-overlapping windows of ``block_len`` tokens, spread evenly over ``text``."""
    if block_len < 2 or n_blocks < 1:
        raise ValueError(f"text_blocks needs block_len >= 2 and n_blocks >= 1, got {block_len} and {n_blocks}.")
    ids = torch.tensor(tokenizer(text)["input_ids"])
    available = len(ids) // block_len
    if available < n_blocks:
        raise ValueError(f"The text has {len(ids)} tokens: only {available} blocks of {block_len}, not {n_blocks}. "
                         f"Use fewer or shorter blocks.")
    starts = torch.linspace(0, available - 1, n_blocks).long() * block_len
    return torch.stack([ids[s:s + block_len] for s in starts.tolist()])


def general_perplexity(model: nn.Module, blocks: torch.Tensor, batch_size: int = 8) -> float:
    """exp(mean next-token loss) of ``model`` over ``blocks`` (works for plain, LoRA and prefix models)."""
    batches = ({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
               for ids in blocks.split(batch_size))
    return perplexity(evaluate_loss(model, batches))


def probe_texts(model: nn.Module, tokenizer, prompts: Sequence[str] = PROBES, max_new_tokens: int = 20) -> list[str]:
    """Greedy continuations of fixed ``prompts``: what the model says about things other than restaurants."""
    return continuations(model, tokenizer, list(prompts), max_new_tokens=max_new_tokens,
                         batch_size=max(1, len(prompts)))


# ----------------------------------------------------------------------------- one method, one setting
@dataclass(frozen=True)
class Setting:
    """One method with its size knob: ``full``; ``lora`` (rank ``r``, ``targets``); ``prefix`` (``length``).

    ``lr_scale`` multiplies the method's learning rate from :mod:`minipeft.recipes` (1: the recipe's own rate).
    """

    method: str
    r: int = 4
    targets: str = "qv"
    alpha: float = 32.0  # fixed while r varies, as in Hu et al.: alpha/r keeps the update's size comparable
    length: int = 10
    mlp_hidden: int = 512  # the prefix paper's reparameterisation P = MLP(P')
    lr_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.method not in ("full", "lora", "prefix"):
            raise ValueError(f"Unknown method {self.method!r}: use 'full', 'lora' or 'prefix'.")
        if not self.lr_scale > 0:
            raise ValueError(f"lr_scale must be a positive number, not {self.lr_scale!r}: 1 is the recipe's rate.")
        if self.method == "lora" and self.targets not in LORA_TARGETS["gpt2"]:  # "qv": the LoRA paper; "all": Biderman
            raise ValueError(f"Unknown LoRA targets {self.targets!r}: use one of {sorted(LORA_TARGETS['gpt2'])}.")

    @property
    def name(self) -> str:
        """The method and its size, whatever the rate: ``LoRA r=16 (qv)``."""
        if self.method == "full":
            return "full FT"
        if self.method == "lora":
            return f"LoRA r={self.r} ({self.targets})"
        return f"prefix P={self.length}"

    @property
    def label(self) -> str:
        """The name, and the rate when it is not the recipe's: ``LoRA r=16 (qv) lr/3``, ``full FT lr x3``."""
        if self.lr_scale == 1:
            return self.name
        return f"{self.name} lr/{1 / self.lr_scale:g}" if self.lr_scale < 1 else f"{self.name} lr x{self.lr_scale:g}"

    def build(self, base: nn.Module) -> nn.Module:
        """A trainable model on a *copy* of ``base`` (``base`` itself is never changed)."""
        model = copy.deepcopy(base)
        if self.method == "full":
            return model.requires_grad_(True)
        if self.method == "lora":
            return apply_lora(model, r=self.r, alpha=self.alpha, **lora_targets(model, self.targets))
        return PrefixTuningModel(model, prefix_len=self.length, mlp_hidden=self.mlp_hidden)


def settings_for(profile: str | Profile | None = None) -> list[Setting]:
    """The settings a notebook compares: fewer in ``ci`` (a smoke run) and in ``cpu`` (SmolLM2-135M on 2 cores:
    one LoRA rank per end of the range, each target set, one prefix), the full sweep in ``gpu``."""
    name = get_profile(profile).name
    if name == "ci":
        return [Setting("full"), Setting("lora", r=1), Setting("lora", r=64), Setting("prefix", length=10)]
    if name == "cpu":
        return [Setting("full"), Setting("lora", r=1), Setting("lora", r=16), Setting("lora", r=16, targets="all"),
                Setting("prefix", length=10)]
    return [Setting("full"), *(Setting("lora", r=r) for r in (1, 4, 16, 64)), Setting("lora", r=16, targets="all"),
            Setting("prefix", length=5), Setting("prefix", length=20)]


def rate_checks(profile: str | Profile | None = None) -> list[Setting]:
    """Notebook 06's question "the method, or its learning rate?": a setting of each method from
    :func:`settings_for` trained again at another rate: each adapter at a third of its rate, full fine-tuning at
    three times its own."""
    name = get_profile(profile).name
    lora, prefix = {"ci": (1, 10), "cpu": (16, 10)}.get(name, (16, 20))
    return [Setting("full", lr_scale=3), Setting("lora", r=lora, lr_scale=1 / 3),
            Setting("prefix", length=prefix, lr_scale=1 / 3)]


def learning_rate(setting: Setting, base_model: str | nn.Module) -> float:
    """The learning rate of ``setting`` on ``base_model``: its method's in notebook 05, from :mod:`minipeft.recipes`,
    times the setting's ``lr_scale``.

    Pass the loaded model: :func:`minipeft.recipes.recipe_for` finds its recipe by its name, else by its family,
    so a model from a local folder (a stand-in GPT-2) or the SmolLM2 the ``gpu`` profile falls back to offline
    gets its own rates. A name must be one of the table's.
    """
    if isinstance(base_model, nn.Module):
        return recipe_for(base_model).lr[METHOD_NAMES[setting.method]] * setting.lr_scale
    if base_model not in RECIPES:
        raise ValueError(f"No recipe for base model {base_model!r}; minipeft.recipes has {sorted(RECIPES)}. "
                         f"Pass the loaded model instead, and its family's recipe is used.")
    return RECIPES[base_model].lr[METHOD_NAMES[setting.method]] * setting.lr_scale


def run_setting(setting: Setting, base: nn.Module, train_loader: DataLoader, val_loader: DataLoader,
                blocks: torch.Tensor, *, steps: int, lr: float, seed: int = 0, tokenizer=None,
                task_mrs: Sequence[str] = (), max_new_tokens: int = 24, eval_batches: int | None = None,
                before: dict | None = None, return_model: bool = False) -> dict | tuple[dict, nn.Module]:
    """Train ``setting`` on a copy of ``base`` for ``steps`` steps; return what it learned and forgot.

    The row holds ``task_loss`` (validation) and ``ppl_after`` (general perplexity, adapter on), the same two
    for the untouched base (``task_loss_before``, ``ppl_before``; pass ``before`` to reuse them), the slot
    error rate on ``task_mrs`` when a ``tokenizer`` is given, trainable parameters and seconds per step.
    ``return_model=True`` returns ``(row, trained_model)``.
    """
    if before is None:
        before = {"task_loss_before": evaluate_loss(base, val_loader, eval_batches),
                  "ppl_before": general_perplexity(base, blocks)}
    seed_everything(seed)  # the adapter's initial A or prefix: the same whichever runs came before
    model = setting.build(base)
    history = train(model, train_loader, steps=steps, lr=lr, warmup_steps=steps // 10, seed=seed, progress=False)
    row = {"label": setting.label, "name": setting.name, **asdict(setting), "seed": seed, "steps": steps, "lr": lr,
           **before, "task_loss": evaluate_loss(model, val_loader, eval_batches),
           "ppl_after": general_perplexity(model, blocks),
           "trainable": count_parameters(model, trainable_only=True),
           "seconds_per_step": history.median_seconds_per_step}
    row["ppl_increase_pct"] = 100 * (row["ppl_after"] / row["ppl_before"] - 1)
    if tokenizer is not None and task_mrs:
        texts = generate_texts(model, tokenizer, list(task_mrs), max_new_tokens=max_new_tokens, progress=False)
        row["slot_error_rate"] = slot_error_rate(list(task_mrs), texts)
    return (row, model) if return_model else row


# ----------------------------------------------------------------------------- seeds, spread, the plot
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
        ax.plot([], [], "o", color=color, label=METHOD_NAMES[method])
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


# ----------------------------------------------------------------------------- results files
def results_path(name: str, results_dir: str | Path | None = None) -> Path:
    return Path(results_dir or RESULTS_DIR) / f"{name}.json"


def save_results(name: str, results: dict, profile: str | Profile | None = None,
                 results_dir: str | Path | None = None) -> Path:
    """Write ``results`` as ``results/<name>.json`` with the profile and base model they were measured with."""
    profile = get_profile(profile)
    path = results_path(name, results_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"name": name, "profile": profile.name, "base_model": profile.base_model, "dry_run": profile.dry_run,
              "created": datetime.now(UTC).isoformat(timespec="seconds"), "results": results}
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    return path


def load_results(name: str, profile: str | Profile | None = None, results_dir: str | Path | None = None
                 ) -> dict | None:
    """The results saved under ``name`` with the same profile and base model, and a dry run's only by a dry run;
    else ``None`` (and a one-line reason)."""
    profile = get_profile(profile)
    path = results_path(name, results_dir)
    if not path.is_file():
        print(f"No saved results {path.name} in {path.parent}: recomputing.")
        if "google.colab" in sys.modules:  # one runtime per notebook: another notebook's results are never here
            print(f"On Colab each notebook runs in its own runtime, so results that another notebook saved are not "
                  f"here, and this cell now recomputes a reduced version of them. Quick "
                  f"path: in the other notebook's runtime download results/{path.name} (Files panel), upload it "
                  f"here to {path.parent}/, and run this cell again.")
        return None
    record = json.loads(path.read_text())
    if record.get("profile") != profile.name:
        print(f"{path.name} was measured with profile {record.get('profile')!r}, not {profile.name!r}: recomputing.")
        return None
    if record.get("base_model", profile.base_model) != profile.base_model:
        print(f"{path.name} was measured on {record['base_model']}, not {profile.base_model}: recomputing.")
        return None
    if record.get("dry_run", False) != profile.dry_run:
        made, now = ("a dry run", "a real run") if record.get("dry_run") else ("a real run", "a dry run")
        print(f"{path.name} comes from {made} and this is {now}: recomputing.")
        return None
    return record["results"]


def notebook06_gpu_peaks() -> list[PeakEstimate]:
    """The estimated T4 peak of notebook 06's two largest training runs in the ``gpu`` profile (GPT-2 small at its
    batch size and sequence length). Notebook 06 keeps the untuned model and every model trained before (one per
    setting) on the GPU; its rate checks train after the last setting, with all of them kept: its full fine-tuning
    at another rate peaks highest."""
    gpu = PROFILES["gpu"]
    cfg = gpt2_config(gpu.base_model)
    n, sizes = gpt2_parameter_count(cfg), dict(batch_size=gpu.batch_size, seq_len=gpu.seq_len)
    settings = settings_for(gpu)
    last = settings[-1]
    if last.method != "prefix":
        raise RuntimeError(f"notebook 06's last gpu setting is {last.label}, not a prefix: update this estimate.")
    full_again = next((s for s in rate_checks(gpu) if s.method == "full"), None)
    if full_again is None:
        raise RuntimeError("notebook 06's gpu rate checks train no full fine-tuning: update this estimate.")
    return [
        training_peak(cfg, prefix_parameter_count(cfg, last.length, last.mlp_hidden), n, kept_models=len(settings),
                      label=f"notebook 06, its last setting ({last.label}; the untuned model and the "
                            f"{len(settings) - 1} trained before it kept)", **sizes),
        training_peak(cfg, n, 0, kept_models=len(settings) + 1,
                      label=f"notebook 06, its rate check of full fine-tuning ({full_again.label}; the untuned model "
                            f"and the {len(settings)} trained settings kept)", **sizes),
    ]
