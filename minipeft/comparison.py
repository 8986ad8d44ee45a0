"""The article's comparison table, judged: each row's claim (prefix-tuning against LoRA) tested on measurements.

A row of :data:`minipeft.article.TABLE` says which method is better at something. The course turns that into
numbers on both methods where lower is better for the method the row favours (parameters kept, seconds per training
step, bytes held to train, nats forgotten), each with a 95% interval, an :class:`Evidence`; :func:`judge` reads the
verdict off the intervals with the forgetting lab's rule (:func:`minipeft.forgetting.frontier.verdict`), so every
row and the forgetting lab use the same words, :data:`VERDICTS`. Where the comparisons disagree for a reason other
than the learning rate (e.g. parameters counted as trained or as kept), "depends on" names that reason.

The measurements themselves: :func:`step_seconds` (training runs' step times), :func:`training_bytes` (what a
training step holds, counted tensor by tensor) and :func:`fewest_kept_at_matched_loss` (the forgetting lab's runs:
the smallest adapter of each method that reaches the same task loss).
"""

from __future__ import annotations

import copy
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .article import ADVICE, RATINGS, Advice, Rating
from .forgetting.frontier import VERDICTS, Interval, t_interval, verdict
from .params import count_parameters
from .train import autocast_dtype, model_device, to_device, training_loss

DEPENDS = next(v for v in VERDICTS if v.startswith("depends on"))  # "depends on the learning rate"


@dataclass(frozen=True)
class Evidence:
    """One comparison of the two methods on a quantity where lower is better (for the method a row favours)."""

    what: str  # e.g. "seconds per training step"
    unit: str
    prefix: Interval
    lora: Interval

    def __str__(self) -> str:
        return f"{self.what}: prefix {_show(self.prefix, self.unit)}, LoRA {_show(self.lora, self.unit)}"


def _show(x: Interval, unit: str) -> str:
    if x.low == x.high:
        return f"{x.mean:,.0f} {unit}" if x.mean >= 100 else f"{x.mean:.3g} {unit}"
    return f"{x.mean:.3g} {unit} [{x.low:.3g}, {x.high:.3g}]"


def exact(value: float) -> Interval:
    """A number measured without spread (a count): its interval is the number itself."""
    return Interval(value, value, value, 1)


def judge(row: Rating, evidence: Sequence[Evidence], across: str = "the learning rate") -> str:
    """The verdict on ``row``'s claim from ``evidence``: one of :data:`VERDICTS`, with "depends on the learning
    rate" saying ``across`` instead when the comparisons differ in something else. No evidence: ``not settled``."""
    if not evidence:
        return "not settled"
    favoured, other = ("lora", "prefix") if row.favours == "lora" else ("prefix", "lora")
    result = verdict([getattr(e, favoured) for e in evidence], [getattr(e, other) for e in evidence])
    return f"depends on {across}" if result == DEPENDS else result


def judge_advice(advice: Advice, verdicts: dict[str, str]) -> str:
    """A sentence of the advice rests on its rows (``verdicts`` by ``feature_zh``): ``not supported`` if any row is
    not, ``supported`` if every row is, else the first "depends on ..." among them, else ``not settled``. A row
    without a verdict (a dry run's "none (dry run)") leaves the sentence without one too."""
    rows = [verdicts[feature] for feature in advice.rows]
    unjudged = [v for v in rows if v not in VERDICTS and not v.startswith("depends on")]
    if unjudged:
        return unjudged[0]
    if "not supported" in rows:
        return "not supported"
    if all(v == "supported" for v in rows):
        return "supported"
    return next((v for v in rows if v.startswith("depends on")), "not settled")


def judge_all_advice(verdicts: dict[str, str]) -> list[tuple[Advice, str]]:
    """Every sentence of the article's advice with its verdict."""
    missing = [f for a in ADVICE for f in a.rows if f not in verdicts]
    if missing:
        raise ValueError(f"No verdict for the row(s) {missing}: judge every row of article.TABLE first "
                         f"({', '.join(RATINGS)}).")
    return [(advice, judge_advice(advice, verdicts)) for advice in ADVICE]


@dataclass(frozen=True)
class RowResult:
    """One row of the article's table, judged: its evidence, the verdict, and one line on what was measured (or
    why nothing could be)."""

    rating: Rating
    evidence: tuple[Evidence, ...]
    verdict: str
    note: str


def plot_rows(results: Sequence[RowResult], axes=None):
    """The table as a figure: one panel per row, prefix-tuning and LoRA side by side on each comparison (dots with
    their 95% intervals; lower is better), the article's ratings and the verdict above. Returns the axes."""
    import matplotlib.pyplot as plt

    from .forgetting.report import METHOD_COLORS

    if axes is None:
        axes = plt.subplots(1, len(results), figsize=(3.6 * len(results), 4.4), layout="constrained")[1]
    for ax, res in zip(axes, results, strict=True):
        row = res.rating
        ax.set_title(f"{row.feature_en}\narticle: prefix {row.prefix_en}, LoRA {row.lora_en}\n"
                     f"measured: {res.verdict}", fontsize=9)
        if not res.evidence:
            ax.text(0.5, 0.5, "\n".join(textwrap.wrap(res.note, 28)), ha="center", va="center", fontsize=8,
                    transform=ax.transAxes)
            ax.set_axis_off()
            continue
        for k, method in enumerate(("prefix", "lora")):  # dots, not bars: on a log axis a bar's length means nothing
            values = [getattr(e, method) for e in res.evidence]
            x = [i + (k - 0.5) * 0.3 for i in range(len(values))]
            ax.errorbar(x, [v.mean for v in values], yerr=[[v.mean - v.low for v in values],
                                                           [v.high - v.mean for v in values]],
                        fmt="o", ms=7, lw=1.5, capsize=0, color=METHOD_COLORS[method],  # an exact count: no bar
                        label={"prefix": "prefix-tuning", "lora": "LoRA"}[method])
        ax.set_xticks(range(len(res.evidence)), ["\n".join(textwrap.wrap(e.what, 18)) for e in res.evidence],
                      fontsize=7)
        ax.set_xlim(-0.6, len(res.evidence) - 0.4)
        ax.set_ylabel(f"{res.evidence[0].unit} (lower is better)", fontsize=8)
        means = [v.mean for e in res.evidence for v in (e.prefix, e.lora) if v.mean > 0]
        top = max(v.high for e in res.evidence for v in (e.prefix, e.lora))
        if means and max(means) / min(means) > 20:
            ax.set_yscale("log")
            ax.set_ylim(top=top * 2)  # a margin above the highest dot, so no dot sits on the spine
        else:
            ax.set_ylim(0, top * 1.08)  # from zero: a 4% gap should look like one; a margin above the highest dot
    drawn = next(ax for ax, res in zip(axes, results, strict=True) if res.evidence)
    handles, labels = drawn.get_legend_handles_labels()
    axes[0].figure.legend(handles, labels, loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    return axes


# ----------------------------------------------------------------------------- measurements
def step_seconds(*runs: Sequence[float]) -> Interval:
    """Seconds per training step: mean and 95% t-interval over the steps of one or more runs, each run's first step
    left out (it pays one-off costs: memory allocation, kernel choice). Needs 2 to 31 steps once those are left out.
    Runs of several methods taken in the order A B C C B A, each method's two runs pooled here, cancel a steady drift
    in the machine's speed (another job starting or stopping) between the methods."""
    times = [t for run in runs for t in run[1:]]
    if not 2 <= len(times) <= 31:
        raise ValueError(f"step_seconds needs 2 to 31 step times after each run's first is left out, got "
                         f"{len(times)} from {len(runs)} run(s): train for fewer or more steps, e.g. two runs of 5.")
    return t_interval(times)


@dataclass(frozen=True)
class TrainingBytes:
    """What one training step holds, in bytes, counted on the tensors themselves."""

    weights: int  # every parameter, trained or frozen
    gradients: int  # the trained parameters' gradients
    optimizer: int  # AdamW's state (m, v and the step count per trained tensor)
    activations: int  # what autograd saved during the forward pass for the backward pass (weights excluded)

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations

    def parts(self) -> dict[str, int]:
        return {"weights": self.weights, "gradients": self.gradients, "AdamW state": self.optimizer,
                "saved for backward": self.activations}


def training_bytes(model: nn.Module, batch: dict[str, torch.Tensor]) -> TrainingBytes:
    """One training step of ``model`` on ``batch`` (as :func:`minipeft.train.train` takes it: same loss, same
    autocast), counted: every tensor autograd saves for the backward pass (each storage once, the parameters' own
    storages left out), the gradients, and the AdamW state after one step. AdamW runs at learning rate 0, so the
    weights do not change; the gradients are freed afterwards and every module's train/eval mode restored."""
    device = model_device(model)
    params = list({id(p): p for p in model.parameters()}.values())  # a tied weight once
    trained = [p for p in params if p.requires_grad]
    if not trained:
        raise ValueError("training_bytes: the model has no trainable parameters; build the method first "
                         "(minipeft.recipes.build).")
    own = {p.untyped_storage().data_ptr() for p in params}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in own:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    modes = {m: m.training for m in model.modules()}
    model.train()
    optimizer = torch.optim.AdamW(trained, lr=0.0)
    dtype = autocast_dtype(device)
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
                torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = training_loss(model, to_device(batch, device))
        loss.backward()
        optimizer.step()
        gradients = sum(p.grad.nbytes for p in trained if p.grad is not None)
        state = sum(t.nbytes for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t))
    finally:
        optimizer.zero_grad(set_to_none=True)
        for module, mode in modes.items():
            module.train(mode)
    return TrainingBytes(sum(p.nbytes for p in params), gradients, state, sum(saved.values()))


def kept_parameters(model: nn.Module, method: str) -> int:
    """The numbers a trained ``method`` keeps per task on ``model`` (as built by :func:`minipeft.recipes.build`):
    LoRA's A and B; a prefix's computed keys and values (its MLP is dropped by ``fold``, on a copy); for full
    fine-tuning, every parameter."""
    if method == "prefix":
        return count_parameters(copy.deepcopy(model).fold(), trainable_only=True)
    return count_parameters(model, trainable_only=method != "full")


def lab_skeleton(base_model: str = "smollm2-135m") -> nn.Module:
    """The forgetting lab's base model with its shapes and no weights (on the ``meta`` device), to count the
    parameters of the lab's settings in any profile. Reads the configuration of the cached SmolLM2-135M."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from .smollm2 import NAME, REBUILD, SMOLLM2_DIR

    if base_model != NAME:
        raise ValueError(f"The forgetting lab runs on {NAME}, not {base_model!r}.")
    if not (SMOLLM2_DIR / "config.json").is_file():
        raise FileNotFoundError(f"No SmolLM2 configuration in {SMOLLM2_DIR}: run `{REBUILD}` (make setup does).")
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(SMOLLM2_DIR))
    model.name_or_path = NAME
    return model


def lab_kept_parameters(skeleton: nn.Module) -> Callable[[dict], int]:
    """``kept(record)``: the parameters a forgetting-lab run's setting keeps, counted on ``skeleton``
    (:func:`lab_skeleton`) built as the lab builds it."""
    from .forgetting.lab import LabRun

    def kept(record: dict) -> int:
        run = LabRun(record["method"], record["lr"], record["seed"], r=record["r"], targets=record["targets"],
                     length=record["length"])
        return kept_parameters(run.build(skeleton), run.method)

    return kept


@dataclass(frozen=True)
class MatchedSize:
    """The smallest setting of each method that reaches ``level`` (a task loss, a mean over seeds), and what each
    keeps; ``candidates``: every setting that counted, as ``(best rate, its task loss, rates run, parameters kept)``."""

    level: float
    prefix_setting: str
    lora_setting: str
    evidence: Evidence
    candidates: dict[str, tuple[float, Interval, int, int]]


def fewest_kept_at_matched_loss(records: Sequence[dict], kept: Callable[[dict], int], min_seeds: int | None = None
                                ) -> MatchedSize | None:
    """From the forgetting lab's runs: each setting's best task loss (:func:`~minipeft.forgetting.findings.
    best_task_loss`: the mean over seeds at its best rate), the task loss both methods reach (the higher of the two
    methods' best), and for each method the setting that reaches it keeping the fewest parameters
    (``kept(record)``). Only settings with ``min_seeds`` seeds at every rate count (default: the lab's
    :data:`~minipeft.forgetting.findings.MIN_SEEDS`, as its forgetting verdicts need): a best loss from fewer seeds
    is too uncertain to say which setting "reaches" a level. None if either method has no such setting."""
    from .forgetting.findings import MIN_SEEDS, best_task_loss, runs_of, seeds_per_rate
    from .forgetting.lab import setting_name

    def complete(setting: str) -> bool:
        return min(seeds_per_rate(records, setting).values()) >= (MIN_SEEDS if min_seeds is None else min_seeds)

    settings = {m: sorted(s for s in {setting_name(r) for r in records if r["method"] == m} if complete(s))
                for m in ("prefix", "lora")}
    if not all(settings.values()):
        return None
    best_at = {s: best_task_loss(records, s) for names in settings.values() for s in names}  # (rate, task loss)
    best = {s: loss.mean for s, (_, loss) in best_at.items()}
    level = max(min(best[s] for s in names) for names in settings.values())
    chosen = {m: min((kept(runs_of(records, s)[0]), s) for s in names if best[s] <= level)
              for m, names in settings.items()}
    evidence = Evidence(f"parameters kept at matched task loss {level:.3f} ({chosen['prefix'][1]} vs "
                        f"{chosen['lora'][1]})", "parameters", exact(chosen["prefix"][0]), exact(chosen["lora"][0]))
    candidates = {s: (lr, loss, len({r["lr"] for r in runs_of(records, s)}), kept(runs_of(records, s)[0]))
                  for s, (lr, loss) in best_at.items()}
    return MatchedSize(level, chosen["prefix"][1], chosen["lora"][1], evidence, candidates)
