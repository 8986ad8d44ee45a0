"""The workshop kit: the solutions runner, the offline cache command, and docs whose commands exist."""

import importlib
import io
import re
import subprocess
import zipfile
from contextlib import redirect_stdout
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _script(name: str):
    return importlib.import_module(f"minipeft.tools.{name}")


def test_solutions_runner_fills_in_and_counts_every_exercise(tmp_path, monkeypatch):
    run_notebooks = _script("run_notebooks")
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import torch\n\nfrom minipeft.exercises import check\n\n"
                                  "class Tiny(torch.nn.Module):  # a 10 x 4 embedding (40) and a 4 -> 2 head (10)\n"
                                  "    def __init__(self):\n        super().__init__()\n"
                                  "        self.wte, self.head = torch.nn.Embedding(10, 4), torch.nn.Linear(4, 2)\n\n"
                                  "    def get_input_embeddings(self):\n        return self.wte\n\n"
                                  "def embedding_share(model):\n    raise NotImplementedError  # your code here\n\n"
                                  'check("00.1", embedding_share, lambda f: f(Tiny()) == 0.8)'),
        nbformat.v4.new_code_cell("assert embedding_share(Tiny()) == 0.8  # runs with the reference"),
    ])
    nbformat.write(nb, tmp_path / "00_x.ipynb")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("MINIPEFT_SOLUTIONS", "1")
    seconds, cpu_seconds, found, passed, error = run_notebooks.run_notebook(tmp_path / "00_x.ipynb", timeout=120)
    assert error is None and found == passed == ["00.1"] and seconds > 0 and cpu_seconds > 0
    unwritten = {"output_type": "stream", "name": "stdout", "text": "Exercise 00.1: not written yet. Write it"}
    assert run_notebooks.CHECK_PASSED.findall(unwritten["text"]) == [], "an unwritten exercise would count as passed"


@pytest.mark.parametrize("profile, expected", [("ci", 600), ("cpu", 3600), ("gpu", 3600)])
def test_runner_gives_long_cells_time_outside_ci(profile, expected, monkeypatch):
    run_notebooks, timeouts = _script("run_notebooks"), []
    for name, value in {"MINIPEFT_PROFILE": profile, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}.items():
        monkeypatch.setenv(name, value)  # main() edits the environment; monkeypatch restores it afterwards
    monkeypatch.setattr(run_notebooks, "run_notebook",
                        lambda path, timeout: timeouts.append(timeout) or (1.0, 1.0, [], [], None))
    with redirect_stdout(io.StringIO()):
        assert run_notebooks.main(["00_start_here.ipynb"]) == 0
        assert run_notebooks.main(["--timeout", "42", "00_start_here.ipynb"]) == 0
    assert timeouts == [expected, 42]


def test_cache_command_offline_says_what_to_do(monkeypatch):
    cache = _script("cache_offline")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(cache, "load_hub_model", lambda *a, **k: pytest.fail("tried to download offline"))
    out = io.StringIO()
    with redirect_stdout(out):
        assert cache.main([]) == 1
    assert "cannot be reached" in out.getvalue() and "Run `make cache` where there is internet" in out.getvalue()


def test_cache_command_online_downloads_then_proves_the_models_load_offline(monkeypatch):
    import torch

    cache = _script("cache_offline")
    downloaded, runs = [], []
    monkeypatch.setattr(cache, "hub_offline", lambda: False)
    monkeypatch.setattr(cache, "hub_reachable", lambda: True)
    monkeypatch.setattr(cache, "load_hub_model", lambda name: downloaded.append(name) or (torch.nn.Linear(2, 2), None))
    monkeypatch.setattr(cache, "load_e2e", lambda split: downloaded.append(split) or [("mr", "ref")])
    check = {"returncode": 0}
    monkeypatch.setattr(cache.subprocess, "run", lambda cmd, env: runs.append((cmd[2:], env["HF_HUB_OFFLINE"]))
                        or subprocess.CompletedProcess(cmd, check["returncode"]))
    out = io.StringIO()
    with redirect_stdout(out):
        assert cache.main(["--models", "gpt2", "gpt2-medium"]) == 0
    assert downloaded == ["gpt2", "gpt2-medium", "train", "validation", "test"]
    assert runs == [(["--check", "--models", "gpt2", "gpt2-medium"], "1")]
    assert out.getvalue().splitlines()[-1] == (
        "Cached. Copy ~/.cache/huggingface (or $HF_HOME) and data/cache/ to each machine that cannot download, then "
        "check it there, offline: HF_HUB_OFFLINE=1 .venv/bin/python -m minipeft.tools.cache_offline --check --models "
        "gpt2 gpt2-medium")
    with redirect_stdout(out := io.StringIO()):
        assert cache.main([]) == 0
    assert out.getvalue().endswith("check it there, offline: make cache-check\n")
    check["returncode"] = 1
    with redirect_stdout(io.StringIO()):
        assert cache.main([]) == 1, "make cache passed although its offline check failed"


def test_cache_advice_is_the_check_the_instructors_guide_gives():
    cache = _script("cache_offline")
    guide = (ROOT / "docs" / "instructors.md").read_text()
    assert cache.CHECK_COMMAND == "make cache-check" and f"`{cache.CHECK_COMMAND}`" in guide
    assert re.search(r"^cache-check: setup\n\tHF_HUB_OFFLINE=1 \.venv/bin/python -m minipeft\.tools\.cache_offline "
                     r"--check$",
                     (ROOT / "Makefile").read_text(), flags=re.M)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_docs_name_only_commands_files_and_notebooks_that_exist(doc):
    text = doc.read_text()
    targets = set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), flags=re.M))
    code = " ".join(re.findall(r"```.*?```", text, flags=re.S) + re.findall(r"`([^`\n]+)`", text))
    for target in re.findall(r"\bmake ([a-z][\w-]*)", code):
        assert target in targets, f"{doc.name} mentions `make {target}`, which the Makefile lacks"
    for path in re.findall(r"\b((?:scripts|tests|minipeft|docs)/[\w./-]+\.(?:py|sh|md))", text):
        assert (ROOT / path).exists(), f"{doc.name} mentions {path}, which does not exist"
    for path in re.findall(r"notebooks/(\d\d_\w+\.ipynb)", text):
        assert (ROOT / "notebooks" / path).exists(), f"{doc.name} links notebooks/{path}, which does not exist"


def test_workshop_guide_exists_with_both_schedules():
    guide = (ROOT / "docs" / "instructors.md").read_text().lower()
    for heading in ("one-day", "half-day", "the day before", "common failures"):
        assert heading in guide, f"docs/instructors.md lacks a {heading!r} section"
    assert "make cache" in guide and "make solutions" in guide


def test_make_slides_builds_a_deck_of_several_slides_per_notebook(tmp_path):
    build_slides = _script("build_slides")
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    with redirect_stdout(out := io.StringIO()):
        assert build_slides.main(["--out", str(tmp_path)]) == 0
    for notebook in notebooks:
        deck = tmp_path / f"{notebook.stem}.slides.html"
        assert deck.is_file(), f"make slides wrote no deck for {notebook.name}"
        tagged = [c for c in nbformat.read(notebook, as_version=4).cells if "slides" in c.metadata.get("tags", [])]
        slides = build_slides.count_slides(deck.read_text())
        assert slides > 1 and slides == len(tagged), f"{deck.name}: {slides} slides for {len(tagged)} tagged cells"
        assert f"slides: {deck} ({slides} slides)" in out.getvalue()
    assert re.search(r"^slides: setup\n\t\.venv/bin/python scripts/build_slides\.py$", (ROOT / "Makefile").read_text(),
                     flags=re.M)


def test_a_notebook_without_slide_tags_says_how_to_tag_it():
    build_slides = _script("build_slides")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# x", metadata={"tags": ["slides"]})])
    with pytest.raises(ValueError) as err:
        build_slides.deck_notebook(nb, "09_x.ipynb")
    assert str(err.value) == ("09_x.ipynb: 1 cell(s) tagged 'slides'; a deck needs at least two. Tag the introduction, "
                              "the section headings and the figures (cell metadata \"tags\").")


def test_gpu_dry_runs_every_notebook_in_the_dry_run_on_the_stand_in(tmp_path, monkeypatch, capsys):
    """`make gpu-dry`'s wiring, with the notebooks themselves stubbed out (they take a long time on 2 cores)."""
    import os

    from minipeft.data import E2E_FILES, write_csv

    gpu_dry, seen = _script("gpu_dry"), []
    monkeypatch.setattr(os, "environ", dict(os.environ))  # main() sets the dry run's variables; undone afterwards
    monkeypatch.setattr(gpu_dry, "OUT", tmp_path / "gpu-dry")
    folders = {hub_id: tmp_path / "standin" / hub_id for hub_id in ("gpt2", "gpt2-medium")}
    for folder in folders.values():  # a GPT-2's configuration is all the profile checks
        folder.mkdir(parents=True)
        (folder / "config.json").write_text('{"model_type": "gpt2"}')
    monkeypatch.setattr(gpu_dry, "standins", lambda: folders)
    devset = tmp_path / "devset.csv"
    write_csv([("name[Alimentum], area[riverside]", "Alimentum is by the river.")], devset)
    monkeypatch.setenv("MINIPEFT_E2E_DEVSET", str(devset))

    class Runner:
        @staticmethod
        def run_notebook(path, timeout, save_to):
            seen.append((path.name, dict(os.environ), save_to))
            return 1.0, 2.0, [], [], None

    monkeypatch.setattr(gpu_dry, "run_notebook", Runner.run_notebook)
    assert gpu_dry.main(["00_start_here.ipynb", "05_gpt2_finetune.ipynb", "--no-replicate"]) == 0
    name, env, save_to = seen[1]
    assert (env["MINIPEFT_PROFILE"], env["MINIPEFT_DRY_RUN"], env["HF_HUB_OFFLINE"]) == ("gpu", "1", "1")
    assert env["MINIPEFT_BASE_MODEL"] == env["MINIPEFT_GPT2_MODEL"] == str(folders["gpt2"])
    out = tmp_path / "gpu-dry"
    assert save_to == out / name and env["MINIPEFT_RESULTS_DIR"] == str(out / "results")
    e2e = Path(env["MINIPEFT_E2E_DIR"])
    assert all((e2e / f).is_symlink() and (e2e / f).resolve() == devset.resolve() for f in E2E_FILES.values())
    printed = capsys.readouterr().out
    assert "05_gpt2_finetune.ipynb: 1 s (2 kernel CPU s)" in printed and "T4 estimate 3.7 GB" in printed
    summary = (tmp_path / "gpu-dry" / "summary.md").read_text()
    assert "| 05_gpt2_finetune.ipynb | 1 | 2 |" in summary and "all of `make gpu-dry`" in summary


def test_gpu_check_without_cuda_says_so_in_one_line():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the check would run for real")
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("gpu_check: no CUDA device")


def test_gpu_checks_lab_run_is_the_first_that_notebook_06_trains(monkeypatch, capsys):
    """The device check's notebook-06 half without a GPU: a dry run of the gpu profile on the mini GPT-2, CUDA's
    counters stood in for. It measures the first run of the method that 06's live cells train, with lab.measure."""
    import torch

    from minipeft import base_model
    from minipeft.forgetting.findings import live_slice
    from minipeft.forgetting.lab import load_runs, notebook06_gpu_peaks

    gpu_check, load = _script("gpu_check"), base_model.load_base_model
    monkeypatch.setenv("MINIPEFT_DRY_RUN", "1")
    monkeypatch.setenv("MINIPEFT_BASE_MODEL", "mini-gpt2")
    monkeypatch.setattr(base_model, "load_base_model", lambda profile, device=None: load(profile, device="cpu"))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda: 1_234_000_000)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda: "a stood-in GPU")
    gpu_check.forgetting_run("lora")
    out = capsys.readouterr().out
    run = next(r for r in live_slice("gpu", load_runs()) if r.method == "lora")
    assert f"notebook 06's lab run {run.name}: {run.steps} steps of batch 8, 2 models kept beside it" in out
    assert re.search(rf"{run.name}: \d+\.\d{{3}} s/step \(median\), peak torch.cuda.max_memory_allocated 1.23 GB, "
                     r"\d+ s in all, on a stood-in GPU", out)
    assert next(p for p in notebook06_gpu_peaks() if "lora r=8" in p.label).format() in out


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return 60 * int(hours) + int(minutes)


@pytest.mark.parametrize("schedule", ["One-day workshop", "Half-day workshop"])
def test_each_block_of_the_schedules_fits_the_measured_cpu_run_times(schedule):
    """Each block lasts at least the measured `cpu` run of its notebooks (the guide's run-time table), except a
    notebook marked "pre-run", run the day before; a schedule ends with an `end` row."""
    guide = (ROOT / "docs" / "instructors.md").read_text()
    timings = guide[guide.index("<!-- timings"):guide.index("<!-- end of timings -->")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in timings.splitlines()[3:]]
    cpu = {row[0][:2]: float(row[3].split()[0]) for row in rows if row[0][:2].isdigit()}
    notebooks = sorted(path.name[:2] for path in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert sorted(cpu) == notebooks, f"the run-time table's notebooks {sorted(cpu)} are not the course's {notebooks}"
    section = guide[guide.index(f"## {schedule}"):]
    table = section[section.index("| time |"):].split("\n\n")[0].splitlines()[2:]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table]
    assert rows[-1][1] == "end", f"{schedule}: the last row is not the end"
    for row, after in zip(rows, rows[1:], strict=False):
        length = _minutes(after[0]) - _minutes(row[0])
        runs = [cpu[number] for part in row[2].split(",") if "pre-run" not in part
                for number in re.findall(r"\b(0\d)\b", part)]
        assert sum(runs) <= length, f"{schedule}, {row[0]} {row[1]}: {sum(runs)} min of cpu runs in {length} min"


def test_the_answer_key_has_every_exercise_with_its_statement_and_solution(tmp_path):
    answer_key = _script("answer_key")
    with redirect_stdout(io.StringIO()):
        assert answer_key.main(["--out", str(tmp_path / "key.md")]) == 0
    page = (tmp_path / "key.md").read_text()
    checked = {key for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
               for key in re.findall(r'check\(\\"(\d\d\.\d+)\\"', path.read_text())}
    solved = answer_key.solutions()
    assert checked and checked == set(solved), "the notebooks' exercises and minipeft/solutions differ"
    assert "no statement found" not in page
    for key, source in solved.items():
        assert source.startswith("def ") and source in page, f"exercise {key}: its solution is not on the page"
    assert re.search(r"^answer-key: setup\n\t\.venv/bin/python scripts/answer_key\.py$",
                     (ROOT / "Makefile").read_text(), flags=re.M)


def test_reveal_js_comes_out_of_its_wheel_once_and_offline_the_slides_say_what_to_do(tmp_path, monkeypatch, capsys):
    build_slides = _script("build_slides")
    calls = []

    def pip_download(cmd, **kwargs):  # a wheel holding reveal.js where sphinx-revealjs keeps it, and something else
        calls.append(cmd)
        with zipfile.ZipFile(Path(cmd[cmd.index("-d") + 1]) / "sphinx_revealjs-3.2.1-py3-none-any.whl", "w") as wheel:
            wheel.writestr(f"{build_slides.REVEAL_IN_WHEEL}dist/reveal.js", "/* reveal.js */")
            wheel.writestr(f"{build_slides.REVEAL_IN_WHEEL}plugin/notes/notes.js", "/* notes */")
            wheel.writestr("sphinx_revealjs/__init__.py", "")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(build_slides.subprocess, "run", pip_download)
    target = build_slides.fetch_reveal(tmp_path / "reveal.js")
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*.js")) == ["dist/reveal.js",
                                                                                    "plugin/notes/notes.js"]
    assert build_slides.REVEAL_WHEEL in calls[0] and "--no-deps" in calls[0]
    assert build_slides.fetch_reveal(target) == target and len(calls) == 1, "a cached reveal.js was fetched again"

    monkeypatch.setattr(build_slides, "REVEAL_DIR", tmp_path / "empty" / "reveal.js")
    monkeypatch.setattr(build_slides.subprocess, "run", lambda cmd, **k: subprocess.CompletedProcess(cmd, 1, "", "no"))
    assert build_slides.main(["--out", str(tmp_path / "decks"), "03_lora.ipynb"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "could not be downloaded from PyPI" in err and "--reveal-prefix" in err
    assert not (tmp_path / "empty" / "reveal.js").exists(), "a failed fetch left a reveal.js folder behind"
