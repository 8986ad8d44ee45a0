"""One story about the models: the README, notebook 00 and the instructors' guide each have a table of what every
profile loads, and it must be what `PROFILES` loads; the stored runs load what their stamp's profile names; the
guide's failures table quotes the messages the code prints."""

import json
import re
from pathlib import Path

import pytest

from minipeft import base_model
from minipeft.params import gpt2_config, gpt2_parameter_count
from minipeft.profiles import PROFILES, get_profile

ROOT = Path(__file__).resolve().parents[1]
HEADER = "| profile | for | base model (notebooks 00, 01, 05-07; the training in 02-03) | GPT-2 (the builds in 02-04) |"
NAMES = {"mini-gpt2": "mini GPT-2", "smollm2-135m": "SmolLM2-135M", "gpt2": "real GPT-2 (124M"}  # as prose says it
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def _prose(name: str) -> str:
    if name.endswith(".ipynb"):
        markdown = [c for c in _cells(ROOT / "notebooks" / name) if c["cell_type"] == "markdown"]
        return "\n".join("".join(c["source"]) for c in markdown)
    return (ROOT / name).read_text()


def profile_table(text: str, where: str) -> dict[str, list[str]]:
    """The rows under HEADER: {profile: [for, base model, GPT-2]}."""
    assert text.count(HEADER) == 1, f"{where}: want one table of the profiles under the header {HEADER!r}"
    lines = text[text.index(HEADER):].splitlines()[2:]
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines[:len(PROFILES) + 1]
            if line.startswith("|")]
    return {row[0].strip("`"): row[1:] for row in rows}


def named_model(cell: str, where: str) -> str:
    named = [key for key, words in NAMES.items() if words in cell]
    assert len(named) == 1, f"{where}: {cell!r} should name exactly one of {list(NAMES.values())}"
    return named[0]


def parameter_count(key: str) -> int:
    if key == "gpt2":
        return gpt2_parameter_count(gpt2_config("gpt2"))
    return sum(p.numel() for p in base_model.load_mini_gpt2()[0].parameters())


@pytest.mark.parametrize("doc", ["README.md", "00_start_here.ipynb", "docs/instructors.md"])
def test_every_profile_table_names_the_models_the_profile_loads(doc):
    table = profile_table(_prose(doc), doc)
    assert list(table) == list(PROFILES), f"{doc}: the table's profiles {list(table)} are not {list(PROFILES)}"
    for name, (_, base, gpt2) in table.items():
        profile = PROFILES[name]
        assert named_model(base, doc) == profile.base_model, f"{doc}, {name}: {base!r} but loads {profile.base_model}"
        assert named_model(gpt2, doc) == profile.gpt2_model, f"{doc}, {name}: {gpt2!r} but loads {profile.gpt2_model}"
        for cell, key in ((base, profile.base_model), (gpt2, profile.gpt2_model)):
            size = re.search(r"\((\d+(?:\.(\d+))?)M", cell)  # "(1.35M", "(124M": checked against the model
            if size:
                digits = len(size.group(2) or "")
                assert float(size.group(1)) == round(parameter_count(key) / 1e6, digits), f"{doc}: {cell!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_each_stored_run_loads_first_a_model_its_profile_names(path):
    stamp = re.search(r"\*\*Stored outputs:\*\* the `(\w+)` profile", "".join(_cells(path)[0]["source"]))
    printed = "".join("".join(o.get("text", "")) for c in _cells(path) for o in c.get("outputs", []))
    first = re.search(r"^Base model: ([\w.-]+) \(", printed, flags=re.M)
    if not (stamp and first):
        pytest.skip(f"{path.name} stores no stamped run that loads a base model")
    profile = PROFILES[stamp.group(1)]
    assert first.group(1) in (profile.base_model, profile.gpt2_model), (
        f"{path.name}: a {profile.name} run loads {first.group(1)} first, which the {profile.name} profile does not "
        f"name (base model {profile.base_model}, GPT-2 {profile.gpt2_model})")


def test_the_guides_failures_table_quotes_the_messages_the_code_prints(monkeypatch):
    monkeypatch.setattr(base_model, "hub_offline", lambda: False)
    hub = base_model.hub_model_unavailable("gpt2", online=False, err=OSError("no cache"))
    monkeypatch.setenv("MINIPEFT_PROFILE", "turbo")
    with pytest.raises(ValueError) as unknown:
        get_profile()
    monkeypatch.setenv("MINIPEFT_PROFILE", "ci")
    monkeypatch.setenv("MINIPEFT_BASE_MODEL", "/nonexistent")
    with pytest.raises(ValueError) as missing:
        get_profile()
    printed = {"HubModelUnavailableError": f"HubModelUnavailableError: {hub}",
               "Unknown minipeft profile": unknown.value._render_traceback_()[0],
               "MINIPEFT_BASE_MODEL=": missing.value._render_traceback_()[0]}
    guide = (ROOT / "docs" / "instructors.md").read_text()
    failures = guide[guide.index("## Common failures"):]
    quoted = [q for q in re.findall(r'^\| "([^"]+)"', failures, flags=re.M) if any(k in q for k in printed)]
    assert len(quoted) == len(printed), f"the failures table should quote each of {list(printed)}"
    for quote in quoted:
        message = next(m for k, m in printed.items() if k in quote)
        assert quote.rstrip(". ") in message, f"the guide quotes {quote!r}; the code prints {message!r}"
