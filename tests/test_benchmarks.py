"""Smoke runs of benchmarks/ (``make bench`` runs them at full size): tiny sizes, one step, so CI keeps them working."""

import json
import re

import pytest
import torch

pytest.importorskip("peft", reason="the benchmarks compare against peft, a dev dependency")

from benchmarks import bench_lora, bench_prefix  # noqa: E402  (the repository root is on pytest's pythonpath)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _table_rows(printed: str) -> dict[str, list[str]]:
    return {cells[0]: cells[1:] for line in printed.splitlines() if line.startswith("| ")
            for cells in [[c.strip() for c in line.strip("|").split("|")]]}


def test_bench_lora_prints_every_measure(monkeypatch, capsys):
    argv = ["--model", "mini", "--device", "cpu", "--steps", "1", "--forwards", "1", "--warmup", "0",
            "--mem-steps", "1", "--batch", "2", "--seq", "8"]

    def peak_in_this_process(which: str, child_argv: list[str]) -> float:  # the child's code, without the process
        bench_lora.main([*child_argv, "--memory-of", which])
        return json.loads(capsys.readouterr().out.strip().splitlines()[-1])["peak_mb"]

    monkeypatch.setattr(bench_lora, "cpu_peak_in_fresh_process", peak_in_this_process)
    bench_lora.main(argv)
    rows = _table_rows(capsys.readouterr().out)
    for measure in ("training step, ms (vs peft)", "peak training memory, MB (vs peft)",
                    "inference, merged, ms (vs base)", "inference, merged+unloaded, ms (vs base)"):
        mine, reference, ratio = (float(x) for x in rows[measure][:3])  # memory in-process: any finite number
        if "ms" in measure:
            assert mine > 0 and reference > 0 and ratio == pytest.approx(mine / reference, rel=0.05), measure


def test_bench_prefix_prints_times_memory_and_the_parameter_counts(capsys):
    bench_prefix.main(["--shape", "mini", "--steps", "1", "--warmup", "0", "--batch", "2", "--seq", "8"])
    printed = capsys.readouterr().out
    for variant in ("plain prefix", "prefix + MLP 512"):
        numbers = [float(x) for x in re.search(rf"^{re.escape(variant)}\s+(.*)$", printed, flags=re.M).group(1).split()]
        assert len(numbers) == 6 and all(n > 0 for n in numbers), variant
    gpt2_small = re.search(r"^full fine-tune\s+[\d,]+\s+[\d.]+%\s+([\d,]+)", printed, flags=re.M).group(1)
    assert gpt2_small == "124,439,808"  # GPT-2 small, tied embeddings counted once
    lora_qv = re.search(r"^LoRA r=4 on q,v\s+[\d,]+\s+[\d.]+%\s+([\d,]+)", printed, flags=re.M).group(1)
    assert lora_qv == f"{12 * 2 * 4 * (768 + 768):,}"  # 12 layers x (q, v) x r (d_in + d_out)
