"""Fixtures the test files share: tiny random models of the course's two families, and a model's state."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from minipeft.base_model import MiniModelMissingError, load_mini_gpt2
from minipeft.data import e2e_devset_path


def make_tiny_gpt2(seed: int = 0, **overrides) -> GPT2LMHeadModel:
    """A random 2-layer GPT-2, 32 wide, 101 tokens (id 0 is bos/eos), in eval mode."""
    torch.manual_seed(seed)
    config = dict(n_layer=2, n_embd=32, n_head=4, vocab_size=101, n_positions=64, bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(GPT2Config(**{**config, **overrides})).eval()


def make_tiny_llama(seed: int = 0, **overrides) -> LlamaForCausalLM:
    """SmolLM2's family in miniature: grouped-query attention (4 query heads share 2 key/value heads of width 8)."""
    torch.manual_seed(seed)
    config = dict(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=48, vocab_size=101, max_position_embeddings=64, bos_token_id=0, eos_token_id=0,
                  pad_token_id=0)
    return LlamaForCausalLM(LlamaConfig(**{**config, **overrides})).eval()


TINY = {"gpt2": make_tiny_gpt2, "llama": make_tiny_llama}


@pytest.fixture
def tiny_gpt2() -> Callable[..., GPT2LMHeadModel]:
    return make_tiny_gpt2


@pytest.fixture
def tiny_llama() -> Callable[..., LlamaForCausalLM]:
    return make_tiny_llama


@pytest.fixture
def tiny() -> dict[str, Callable[..., nn.Module]]:
    """The two tiny-model factories by family: ``tiny["gpt2"]()``, ``tiny["llama"](seed=1)``."""
    return TINY


@pytest.fixture
def mini_gpt2() -> GPT2LMHeadModel:
    """A fresh copy of the course's offline mini GPT-2 (skips when it is not built)."""
    try:
        return load_mini_gpt2()[0]
    except MiniModelMissingError as err:
        pytest.skip(str(err))


@pytest.fixture(params=["tiny", "mini"])
def gpt2(request, tiny_gpt2) -> GPT2LMHeadModel:
    """Each test twice: on the tiny random GPT-2 and on the course's mini GPT-2."""
    return tiny_gpt2() if request.param == "tiny" else request.getfixturevalue("mini_gpt2")


E2E_DEVSET = e2e_devset_path()
_WITHOUT_DEVSET: list[str] = []  # tests skipped here for want of the dev set, for the closing summary line


def in_ci() -> bool:
    """Whether this run is CI's (which sets ``CI=true``), where the dev set must be present."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def devset_or_skip(path: Path, test: str) -> Path:
    """``path`` if the dev set is there. Missing: in CI (``CI=true``) the test fails, naming the path; elsewhere it
    skips, and the run ends with a loud line naming it."""
    if path.is_file():
        return path
    if in_ci():
        pytest.fail(f"the real E2E dev set is missing at {path}: CI must provide it (or set MINIPEFT_E2E_DEVSET)")
    _WITHOUT_DEVSET.append(test)
    pytest.skip(f"real E2E dev set not found at {path}")


@pytest.fixture
def e2e_devset(request) -> Path:
    """The real E2E dev set (``../shared/data/e2e/devset.csv``, or ``MINIPEFT_E2E_DEVSET``); see devset_or_skip."""
    return devset_or_skip(E2E_DEVSET, request.node.nodeid)


def pytest_terminal_summary(terminalreporter) -> None:
    if _WITHOUT_DEVSET:
        terminalreporter.write_sep("!", f"{len(_WITHOUT_DEVSET)} TESTS ON THE REAL E2E DEV SET DID NOT RUN: no file at "
                                        f"{E2E_DEVSET} (in CI they fail)", red=True, bold=True)
        for nodeid in _WITHOUT_DEVSET:
            terminalreporter.write_line(f"  skipped: {nodeid}", red=True)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread (and do not fight other jobs for the cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Snapshot:
    """Everything a refused call must leave as it was: values, ``requires_grad``, module types and modes."""

    def __init__(self, model: nn.Module) -> None:
        self.values = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.grads = {n: p.requires_grad for n, p in model.named_parameters()}
        self.modules = {n: (type(m), m.training) for n, m in model.named_modules()}

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Snapshot) and self.values.keys() == other.values.keys()
                and all(torch.equal(v, other.values[k]) for k, v in self.values.items())
                and self.grads == other.grads and self.modules == other.modules)


@pytest.fixture
def snapshot() -> Callable[[nn.Module], Snapshot]:
    """``before = snapshot(model)``; after a refused call, ``assert snapshot(model) == before``."""
    return Snapshot


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now (for a JupyterLab the test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_server(server: subprocess.Popen) -> None:
    """Stop a server started with ``start_new_session=True``, and every process it started: TERM, then KILL."""
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def train_like(model: nn.Module, seed: int = 2) -> None:
    """A trained adapter: B != 0 (a fresh B = 0 hides every mistake) and m != ||W0 + s B A||."""
    from minipeft.dora import DoRALayer
    from minipeft.lora import lora_layers

    torch.manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B.normal_(std=0.5)
            if isinstance(layer, DoRALayer):
                layer.lora_magnitude.mul_(1 + 0.1 * torch.randn_like(layer.lora_magnitude))
