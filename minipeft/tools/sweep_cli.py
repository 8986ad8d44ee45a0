"""The options every resumable sweep's command shares: --max-runs, --dir, --threads and (optionally) --profile."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def sweep_parser(doc: str, results_dir: str | Path, profile: bool = True) -> argparse.ArgumentParser:
    """A parser with the shared options; the command adds its own (``--grid``, ``--method``, ``--devset``)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--max-runs", type=int, default=None, help="stop after this many new runs")
    parser.add_argument("--dir", default=str(results_dir), help=f"results folder (default {results_dir})")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    if profile:
        parser.add_argument("--profile", default="cpu", help="cpu (SmolLM2-135M, the committed results) or ci (smoke)")
    return parser


def parse_sweep_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv`` and give torch the ``--threads`` asked for (one run's timings depend on it)."""
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    return args
