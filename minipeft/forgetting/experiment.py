"""Notebook 06's experiment: the settings it trains, their learning rates, and one training run per setting.

    blocks = text_blocks(general_text(profile)[0], tokenizer, block_len=128, n_blocks=32)
    row = run_setting(Setting("lora", r=4), base, train_loader, val_loader, blocks, steps=200, lr=3e-3)
    row["ppl_before"], row["ppl_after"], row["task_loss"]
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..checks import finite_float
from ..decode import generate_texts
from ..memory import PeakEstimate, training_peak
from ..metrics import slot_error_rate
from ..params import count_parameters, gpt2_config, gpt2_parameter_count, prefix_parameter_count
from ..profiles import PROFILES, Profile, get_profile
from ..recipes import LORA_TARGETS, RECIPES, build, recipe_for
from ..seeding import seed_everything
from ..train import evaluate_loss, train
from .general import general_perplexity


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
        finite_float(self.lr_scale, "lr_scale", "1 is the recipe's rate, 3 three times it.", positive=True)
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
        """A trainable model on a *copy* of ``base`` (``base`` itself is never changed): :func:`minipeft.recipes.build`
        with this setting's size."""
        return build(self.method, copy.deepcopy(base), r=self.r, alpha=self.alpha, targets=self.targets,
                     prefix_len=self.length, mlp_hidden=self.mlp_hidden)


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
    so a model from a local folder (a stand-in GPT-2) or a Hub id the table does not name gets its family's
    rates. A name must be one of the table's.
    """
    if isinstance(base_model, nn.Module):
        return recipe_for(base_model).rate(setting.method) * setting.lr_scale
    if base_model not in RECIPES:
        raise ValueError(f"No recipe for base model {base_model!r}; minipeft.recipes has {sorted(RECIPES)}. "
                         f"Pass the loaded model instead, and its family's recipe is used.")
    return RECIPES[base_model].rate(setting.method) * setting.lr_scale


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
