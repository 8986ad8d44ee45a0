"""A newcomer's first hour: the licence, set-up on an ordinary machine, and `make course` (root or not)."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_license_file_matches_pyproject():
    licence = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]["text"]
    text = (ROOT / "LICENSE").read_text()
    assert licence == "MIT" and text.startswith("MIT License\n")
    assert "Permission is hereby granted, free of charge" in text
