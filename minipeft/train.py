"""One training loop for every method: full fine-tuning, prefix-tuning and LoRA.

``train`` is plain PyTorch so that a learner can read what happens in a step::

    loss = model(**batch).loss            # forward: the model computes the causal-LM loss itself
    loss.backward()                       # backward: gradients for the trainable parameters only
    clip_grad_norm_(params, max_grad_norm)
    optimizer.step(); scheduler.step()    # AdamW, learning rate warmed up then decayed linearly

It only needs ``model(**batch).loss``, so a ``GPT2LMHeadModel``, a LoRA-wrapped model and a
prefix-tuning wrapper all train through it. The optimiser sees ``p.requires_grad`` parameters only:
freezing is how a method says what it trains.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import psutil
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .checks import finite_float, positive_int, probability
from .params import count_parameters
from .seeding import seed_everything


@dataclass
class History:
    """What a training run measured; ``plot()`` draws the loss curves."""

    train_loss: list[float] = field(default_factory=list)  # one per step
    val_steps: list[int] = field(default_factory=list)  # steps at which validation ran
    val_loss: list[float] = field(default_factory=list)
    seconds_per_step: list[float] = field(default_factory=list)
    peak_memory_bytes: int = 0  # GPU: torch.cuda.max_memory_allocated; CPU: process RSS (psutil)
    trainable_params: int = 0
    lr: list[float] = field(default_factory=list)

    @property
    def steps(self) -> int:
        return len(self.train_loss)

    @property
    def median_seconds_per_step(self) -> float:
        times = sorted(self.seconds_per_step[1:] or self.seconds_per_step)  # step 1 includes warm-up costs
        return times[len(times) // 2] if times else float("nan")

    def plot(self, ax=None, label: str | None = None, smooth: int = 10):
        """Training loss (moving average over ``smooth`` steps) and validation loss against steps."""
        ax = ax or plt.gca()
        losses = torch.tensor(self.train_loss)
        k = max(1, min(smooth, len(losses)))
        smoothed = losses.unfold(0, k, 1).mean(1).tolist() if len(losses) else []
        train_label = f"{label} (train)" if label else "train"
        line = ax.plot(range(k, len(losses) + 1), smoothed, alpha=0.6, label=train_label)[0]
        if self.val_loss:
            ax.plot(self.val_steps, self.val_loss, "o-", color=line.get_color(),
                    label=f"{label} (val)" if label else "validation")
        ax.set_xlabel("training step")
        ax.set_ylabel("loss (cross-entropy, nats/token)")
        ax.legend()
        return ax


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 on GPUs built for it (Ampere and later), fp16 on older ones (e.g. a T4), none (fp32) on the CPU.

    A T4 runs bf16 only through slow emulation, which ``torch.cuda.is_bf16_supported()`` counts as support
    unless told not to; there the loop uses fp16 with loss scaling instead.
    """
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """``with evaluating(model):`` eval mode (no dropout) and no gradients; the model's own mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def evaluate_loss(model: nn.Module, loader: Iterable[dict[str, torch.Tensor]], max_batches: int | None = None) -> float:
    """Mean loss per predicted token over ``loader`` (the first ``max_batches`` batches), in eval mode.

    Any batches with ``labels`` will do (``-100`` marks tokens that are not predicted), not only a DataLoader's.
    """
    device = model_device(model)
    dtype = autocast_dtype(device)
    total, tokens = 0.0, 0
    with evaluating(model):
        for batch in itertools.islice(loader, max_batches):
            batch = to_device(batch, device)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                loss = model(**batch).loss
            n = int((batch["labels"][:, 1:] != -100).sum())  # tokens the loss averaged over (labels shift by 1)
            total += loss.float().item() * n
            tokens += n
    if tokens == 0:
        raise ValueError("evaluate_loss: the loader has no labelled tokens (is it empty?)")
    return total / tokens


def _cycle(loader: DataLoader) -> Iterator[dict[str, torch.Tensor]]:
    """Loop over the loader forever (a new shuffle each pass), so a run can last any number of steps."""
    while True:
        yield from loader


def _peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return psutil.Process().memory_info().rss


def training_loss(model: nn.Module, batch: dict[str, torch.Tensor], label_smoothing: float = 0.0) -> torch.Tensor:
    """The model's own causal-LM loss on ``batch``; with ``label_smoothing`` > 0, label-smoothed cross-entropy of
    each next token on the labelled positions instead (labels -100, the prompt and the padding, are skipped)."""
    if not label_smoothing:
        return model(**batch).loss
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), batch["labels"][:, 1:].flatten(), ignore_index=-100,
                           label_smoothing=label_smoothing)


def train(model: nn.Module, train_loader: DataLoader, *, steps: int, lr: float,
          val_loader: DataLoader | None = None, eval_every: int | None = None, eval_batches: int | None = None,
          warmup_steps: int = 0, weight_decay: float = 0.0, max_grad_norm: float | None = 1.0,
          device: torch.device | str | None = None, seed: int = 0, progress: bool = True,
          label_smoothing: float = 0.0) -> History:
    """Train the parameters of ``model`` that require grad for ``steps`` steps; returns a :class:`History`.

    Validation loss is measured every ``eval_every`` steps and at the end when ``val_loader`` is given.
    ``label_smoothing`` > 0 trains on label-smoothed cross-entropy (:func:`training_loss`), as the LoRA paper's
    E2E recipe does (0.1); the validation loss stays the model's own.
    """
    positive_int(steps, "steps", "Train for at least one step, e.g. steps=100.")
    finite_float(lr, "lr", "Take the method's rate from minipeft.recipes, e.g. recipe_for(model).lr['LoRA'].",
                 positive=True)
    probability(label_smoothing, "label_smoothing", "Use 0 for none, 0.1 as the LoRA paper.", below_one=True)
    if len(train_loader) == 0:
        raise ValueError("The training loader is empty: give it at least one batch of examples.")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("The model has no trainable parameters (all have requires_grad=False); "
                         "unfreeze some or add an adapter before training.")
    seed_everything(seed)
    if isinstance(getattr(train_loader, "generator", None), torch.Generator):  # replay the same shuffles
        train_loader.generator.manual_seed(train_loader.generator.initial_seed())  # for every run and method
    device = torch.device(device) if device is not None else model_device(model)
    model.to(device).train()
    dtype = autocast_dtype(device)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)  # fp16 needs loss scaling; bf16 not
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)

    def lr_factor(step: int) -> float:  # linear warm-up to lr, then linear decay to 0 at `steps`
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (steps - step) / max(1, steps - warmup_steps))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    history = History(trainable_params=count_parameters(model, trainable_only=True))
    batches = _cycle(train_loader)
    bar = tqdm(range(1, steps + 1), desc="training", disable=not progress)
    for step in bar:
        start = time.perf_counter()
        batch = to_device(next(batches), device)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = training_loss(model, batch, label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if max_grad_norm is not None:
            scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        scaler.step(optimizer)
        scaler.update()
        history.lr.append(scheduler.get_last_lr()[0])
        scheduler.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        history.seconds_per_step.append(time.perf_counter() - start)
        history.train_loss.append(loss.item())
        if val_loader is not None and (step == steps or (eval_every and step % eval_every == 0)):
            history.val_steps.append(step)
            history.val_loss.append(evaluate_loss(model, val_loader, eval_batches))  # leaves train mode on
        postfix = {"loss": f"{loss.item():.3f}"}
        if history.val_loss:
            postfix["val"] = f"{history.val_loss[-1]:.3f}"
        bar.set_postfix(postfix)
    history.peak_memory_bytes = _peak_memory(device)
    # Free the last step's gradients: a model kept after training (notebook 06 keeps one per setting on the GPU)
    # then holds its weights only, not also a gradient the size of every trained weight.
    optimizer.zero_grad(set_to_none=True)
    model.eval()
    return history
