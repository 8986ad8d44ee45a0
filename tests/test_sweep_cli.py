"""The options the three resumable sweeps share (forgetting lab, ladder, real E2E)."""

import pytest
import torch

from minipeft.tools.sweep_cli import parse_sweep_args, sweep_parser


def test_shared_options_parse_and_set_threads(tmp_path):
    before = torch.get_num_threads()
    parser = sweep_parser("Doc line.\n\nMore.", tmp_path)
    try:
        args = parse_sweep_args(parser, ["--max-runs", "3", "--threads", "1", "--profile", "ci"])
        assert (args.max_runs, args.dir, args.profile) == (3, str(tmp_path), "ci")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert parser.description == "Doc line."


def test_defaults_leave_threads_alone_and_profile_optional(tmp_path):
    before = torch.get_num_threads()
    args = parse_sweep_args(sweep_parser("Doc.", tmp_path, profile=False), [])
    assert (args.max_runs, args.threads, torch.get_num_threads()) == (None, None, before)
    assert not hasattr(args, "profile")
    with pytest.raises(SystemExit):
        parse_sweep_args(sweep_parser("Doc.", tmp_path, profile=False), ["--profile", "ci"])


@pytest.mark.parametrize("tool", ["forgetting_lab", "ladder", "real_e2e"])
def test_every_sweep_command_uses_the_shared_options(tool, capsys):
    module = __import__(f"minipeft.tools.{tool}", fromlist=["main"])
    with pytest.raises(SystemExit):
        module.main(["--help"])
    help_text = capsys.readouterr().out
    assert all(option in help_text for option in ("--max-runs", "--dir", "--threads"))
