"""One-click Colab: every badge and install cell agrees with pyproject.toml, and the install cell is a no-op here."""

import base64
import io
import json
import os
import subprocess
import sys
import time
import tomllib
import types
from contextlib import redirect_stdout
from importlib.metadata import version
from pathlib import Path

import nbformat
import pytest

from minipeft.tools import colab_check
from minipeft.tools import sync_notebooks as sync

ROOT = Path(__file__).resolve().parents[1]


def _course_copy(tmp_path: Path, url: str = "https://github.com/someone/course", ref: str = "v1.0") -> Path:
    """A tiny course: pyproject.toml with ``url``/``ref``, two notebooks, a README with the table markers."""
    (tmp_path / "pyproject.toml").write_text(
        f'[project]\nname = "x"\n[project.urls]\nRepository = "{url}"\n[tool.minipeft.colab]\nref = "{ref}"\n')
    (tmp_path / "notebooks").mkdir()
    for name, title in [("00_intro.ipynb", "00 · Intro"), ("03_lora.ipynb", "03 · LoRA")]:
        nb = nbformat.v4.new_notebook(cells=[
            nbformat.v4.new_markdown_cell(f"# {title}\n\n**Learning goals.** a, b.\n\n**Time:** about 7 minutes."),
            nbformat.v4.new_code_cell("from minipeft import setup_notebook\n\nprofile, device = setup_notebook()"),
            nbformat.v4.new_markdown_cell("## Recap\n\nDone."),
        ])
        (tmp_path / "notebooks" / name).write_text(nbformat.writes(nb))
    (tmp_path / "README.md").write_text(
        f"# Course\n\n{sync.TABLE_START}\n| # | notebook | what you learn |\n|---|---|---|\n"
        "| 00 | intro | the basics |\n| 03 | LoRA | low rank |\n| 05 | later | not written |\n"
        f"{sync.TABLE_END}\n\nMore.\n")
    return tmp_path


def _check(root: Path) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        code = sync.main(["--check"], root)
    return code, out.getvalue()


def test_every_notebook_and_the_readme_agree_with_pyproject():
    code, report = _check(ROOT)
    assert code == 0, report


def test_sync_writes_badges_install_cells_and_table_and_is_idempotent(tmp_path):
    root = _course_copy(tmp_path)
    assert _check(root)[0] == 1
    assert sync.main([], root) == 0
    assert _check(root) == (0, "")
    before = {p: p.read_text() for p in root.rglob("*") if p.is_file()}
    sync.main([], root)
    assert {p: p.read_text() for p in root.rglob("*") if p.is_file()} == before, "a second sync changed files"

    cells = json.loads((root / "notebooks" / "03_lora.ipynb").read_text())["cells"]
    url = "https://colab.research.google.com/github/someone/course/blob/v1.0/notebooks/03_lora.ipynb"
    assert cells[0]["source"][0] == f"[![{sync.UNPUBLISHED_ALT}]({sync.BADGE_IMAGE})]({url})\n"
    assert "# 03 · LoRA" in "".join(cells[0]["source"]), "the introduction was lost"
    sources = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    assert sources[0] == sync.install_cell_source(root) and "setup_notebook()" in sources[1]
    assert "--branch=v1.0" in sources[0] and '"https://github.com/someone/course"' in sources[0]
    nbformat.validate(nbformat.reads((root / "notebooks" / "03_lora.ipynb").read_text(), as_version=4))

    readme = (root / "README.md").read_text()
    assert ("| 03 | [LoRA](notebooks/03_lora.ipynb) | low rank | about 7 minutes | [![Open In Colab: publish first"
            in readme)
    assert f"({url}) |" in readme and "| 05 | later | not written | — | not yet |" in readme
    assert readme.endswith(f"{sync.TABLE_END}\n\nMore.\n")


def test_a_new_address_or_branch_makes_the_check_fail_until_synced(tmp_path):
    root = _course_copy(tmp_path)
    sync.main([], root)
    pyproject = root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace("someone/course", "fork/course").replace("v1.0", "main"))
    code, report = _check(root)
    assert code == 1
    assert "00_intro.ipynb: the first line of the first cell is not the Colab badge" in report
    assert "03_lora.ipynb: the first code cell is not the current Colab install cell" in report
    assert "README.md: the course table disagrees" in report and "python scripts/sync_notebooks.py" in report
    sync.main([], root)
    assert _check(root)[0] == 0
    assert "blob/main/notebooks/00_intro.ipynb" in (root / "README.md").read_text()


def test_an_edited_install_cell_or_a_missing_one_is_caught(tmp_path):
    root = _course_copy(tmp_path)
    sync.main([], root)
    path = root / "notebooks" / "00_intro.ipynb"
    nb = json.loads(path.read_text())
    nb["cells"][1]["source"][-1] += "  # edited by hand"
    assert sync.notebook_problems(nb, path.name, root) == [
        "00_intro.ipynb: the first code cell is not the current Colab install cell"]
    del nb["cells"][1]
    assert "00_intro.ipynb: needs exactly one Colab install cell" in sync.notebook_problems(nb, path.name, root)


def test_bad_repository_address_and_bad_notebook_say_what_to_fix(tmp_path):
    root = _course_copy(tmp_path, url="https://gitlab.com/someone/course")
    with pytest.raises(ValueError, match=r"is not https://github.com/<owner>/<repo>; Colab opens .* from GitHub"):
        sync.repository(root)
    (tmp_path / "b").mkdir()
    root = _course_copy(tmp_path / "b")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    with pytest.raises(ValueError, match="first cell must be the markdown introduction"):
        sync.sync_notebook(nb, "09_x.ipynb", root)


def _forbid(*_args, **_kwargs):
    raise AssertionError("the Colab cell started a process outside Colab")


def test_install_cell_does_nothing_outside_colab(monkeypatch):
    assert "google.colab" not in sys.modules
    for name in ("run", "Popen", "call", "check_call", "check_output"):
        monkeypatch.setattr(subprocess, name, _forbid)
    monkeypatch.setattr(os, "system", _forbid)
    env, path, cwd, modules = dict(os.environ), list(sys.path), os.getcwd(), set(sys.modules)
    out = io.StringIO()
    start = time.perf_counter()
    with redirect_stdout(out):
        exec(compile(sync.install_cell_source(ROOT), "colab-cell", "exec"), {})
    elapsed = time.perf_counter() - start
    assert out.getvalue() == "", "the Colab cell printed something outside Colab"
    assert dict(os.environ) == env and sys.path == path and os.getcwd() == cwd
    assert set(sys.modules) == modules, "the Colab cell imported something outside Colab"
    assert elapsed < 0.05, f"the Colab cell took {elapsed:.3f} s outside Colab"


@pytest.mark.parametrize("gpu", [False, True], ids=["cpu-runtime", "gpu-runtime"])
def test_install_cell_on_colab_clones_installs_keeps_torch_and_picks_the_profile(monkeypatch, tmp_path, gpu):
    import torch

    calls = []
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(subprocess, "run",
                        lambda cmd, **kw: calls.append((cmd, kw)) or subprocess.CompletedProcess(cmd, 0))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla T4")
    monkeypatch.delenv("MINIPEFT_PROFILE", raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    out = io.StringIO()
    with redirect_stdout(out):
        exec(compile(sync.install_cell_source(ROOT), "colab-cell", "exec"), {})

    url, ref = sync.repository(ROOT)
    (clone, clone_kw), (deps, deps_kw), (package, package_kw) = calls
    assert clone == ["git", "clone", "--quiet", "--depth=1", f"--branch={ref}", url, sync.COLAB_DIR]
    assert deps[:5] == [sys.executable, "-m", "pip", "install", "--quiet"]
    assert deps[5] == f"torch=={version('torch')}", "pip must keep Colab's torch"
    wanted = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert deps[6:] == [d for d in wanted if not d.startswith(("torch", "jupyterlab", "ipywidgets"))]
    assert package == [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "-e", sync.COLAB_DIR]
    assert not {"-U", "--upgrade", "--force-reinstall"} & set(deps + package)
    assert list(clone_kw) == ["env"] and clone_kw["env"]["PATH"] == os.environ["PATH"]
    assert clone_kw["env"]["GIT_TERMINAL_PROMPT"] == "0", "git must never wait for a password"
    assert deps_kw == package_kw == {"check": True}
    assert sys.path[0] == sync.COLAB_DIR
    if gpu:
        assert os.environ["MINIPEFT_PROFILE"] == "gpu" and "Tesla T4" in out.getvalue()
    else:
        assert os.environ["MINIPEFT_PROFILE"] == "cpu"
        assert "Runtime > Change runtime type > T4 GPU" in out.getvalue()


def _colab_cell_with_failing_clone(monkeypatch) -> list:
    calls = []
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    isdir = os.path.isdir
    monkeypatch.setattr(os.path, "isdir", lambda path: path != sync.COLAB_DIR and isdir(path))
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: calls.append(cmd) or subprocess.CompletedProcess(cmd, 128))
    return calls


def test_a_failed_clone_shows_one_line_with_the_address_and_what_to_check(monkeypatch):
    calls = _colab_cell_with_failing_clone(monkeypatch)
    with pytest.raises(Exception) as raised:
        exec(compile(sync.install_cell_source(ROOT), "colab-cell", "exec"), {})
    url, ref = sync.repository(ROOT)
    line = (f"Could not clone {url} (branch {ref}) into /content/minipeft: check that this Colab runtime has "
            "internet and that the course is published at that address with that branch (the course's "
            "pyproject.toml: [project.urls] Repository and [tool.minipeft.colab] ref, then make colab).")
    assert type(raised.value).__name__ == "CourseNotInstalled" and str(raised.value) == line
    assert raised.value._render_traceback_() == [line], "Jupyter would show a traceback"
    assert [cmd[:2] for cmd in calls] == [["git", "clone"]], "pip ran after the clone failed"


def test_a_failed_clone_reads_as_one_line_in_ipython(tmp_path):
    """The cell run by IPython, the kernel behind Jupyter and Colab: its whole output is the one line."""
    script = tmp_path / "cell.py"
    script.write_text(f"""import os, subprocess, sys, types
sys.modules["google.colab"] = types.ModuleType("google.colab")
isdir = os.path.isdir
os.path.isdir = lambda path: path != "/content/minipeft" and isdir(path)
subprocess.run = lambda cmd, **kw: subprocess.CompletedProcess(cmd, 128)
from IPython.core.interactiveshell import InteractiveShell
InteractiveShell.instance(colors="nocolor").run_cell({sync.install_cell_source(ROOT)!r})
""")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    url, ref = sync.repository(ROOT)
    assert result.stdout.strip() == sync.clone_failed_message(url, ref), result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


# ----------------------------------------------------------------------------- make colab-check


def _colab_check(root, **fakes) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        code = colab_check.main([], root, **fakes)
    return code, out.getvalue()


def test_colab_check_without_internet_fails_as_not_checked_and_ci_never_calls_it(tmp_path):
    root = _course_copy(tmp_path)
    fail = lambda *a: pytest.fail("colab-check fetched something offline")  # noqa: E731
    assert _colab_check(root, reachable=lambda: False, exists=fail, has_ref=fail) == (1, (
        "colab-check: not checked: github.com cannot be reached from here; run `make colab-check` where there is "
        "internet.\n"))
    assert "colab" not in (ROOT / ".ci" / "run").read_text() and "colab" not in (ROOT / "Makefile").read_text().split(
        "\ntest:")[1].split("\n\n")[0], "CI or make test calls colab-check, which needs the internet"


def test_badges_say_publish_first_until_pyproject_says_published(tmp_path):
    root = _course_copy(tmp_path)
    assert sync.badge("00_intro.ipynb", root).startswith(f"[![{sync.UNPUBLISHED_ALT}]({sync.BADGE_IMAGE})]")
    assert "publish first" in sync.UNPUBLISHED_ALT
    (root / "pyproject.toml").write_text((root / "pyproject.toml").read_text() + "published = true\n")
    assert sync.badge("00_intro.ipynb", root).startswith(f"[![Open In Colab]({sync.BADGE_IMAGE})]")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["minipeft"]["colab"]
    shown = "".join(json.loads((ROOT / "notebooks" / "00_start_here.ipynb").read_text())["cells"][0]["source"][:1])
    assert (sync.UNPUBLISHED_ALT in shown) == (project.get("published") is not True)
    readme = (ROOT / "README.md").read_text()
    assert ("| open (publish first) |" in readme) == (project.get("published") is not True)


def test_colab_check_fetches_every_badge_and_the_clone_address_and_names_what_is_missing(tmp_path):
    root = _course_copy(tmp_path)
    fetched, asked = [], []
    published = {"https://raw.githubusercontent.com/someone/course/v1.0/notebooks/00_intro.ipynb"}
    code, report = _colab_check(root, reachable=lambda: True,
                                exists=lambda url: fetched.append(url) or url in published,
                                has_ref=lambda url, ref: asked.append((url, ref)) or True)
    assert asked == [("https://github.com/someone/course", "v1.0")]
    assert fetched == [f"https://raw.githubusercontent.com/someone/course/v1.0/notebooks/{name}"
                       for name in ("00_intro.ipynb", "03_lora.ipynb")]
    assert code == 1 and report == (
        "MISSING badge https://colab.research.google.com/github/someone/course/blob/v1.0/notebooks/03_lora.ipynb: "
        "https://raw.githubusercontent.com/someone/course/v1.0/notebooks/03_lora.ipynb is not there\n"
        "colab-check: 1 of 3 addresses missing. Publish the course at https://github.com/someone/course (push branch "
        "or tag v1.0), or set [project.urls] Repository in pyproject.toml to where it is, run `make colab` and push.\n")
    code, report = _colab_check(root, reachable=lambda: True, exists=lambda url: True, has_ref=lambda url, ref: False)
    assert code == 1 and report.startswith("MISSING clone address https://github.com/someone/course has no branch or "
                                           "tag 'v1.0' (or is not a public repository)\n")
    assert _colab_check(root, reachable=lambda: True, exists=lambda url: True, has_ref=lambda url, ref: True) == (
        0, "colab-check: the clone address and all 2 badges answer (https://github.com/someone/course, v1.0).\n"
           "colab-check: set published = true under [tool.minipeft.colab] in pyproject.toml and run `make colab`, so "
           "that the badges stop saying 'publish first'.\n")


def test_on_colab_a_notebook_missing_another_notebooks_results_says_so_and_offers_the_quick_path(
        monkeypatch, tmp_path, capsys):
    from minipeft.results import load_results

    assert load_results("06_forgetting", "gpu", results_dir=tmp_path) is None
    assert capsys.readouterr().out == f"No saved results 06_forgetting.json in {tmp_path}: recomputing.\n"
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    assert load_results("06_forgetting", "gpu", results_dir=tmp_path) is None
    assert capsys.readouterr().out == (
        f"No saved results 06_forgetting.json in {tmp_path}: recomputing.\n"
        "On Colab each notebook runs in its own runtime, so results that another notebook saved are not here, and "
        "this cell now recomputes a reduced version of them. Quick path: in the other notebook's runtime download "
        f"results/06_forgetting.json (Files panel), upload it here to {tmp_path}/, and run this cell again.\n")


def test_diagrams_travel_inside_the_notebook_as_attachments_of_the_current_figure(tmp_path):
    root = _course_copy(tmp_path)
    (root / "docs" / "figures").mkdir(parents=True)
    figure = root / "docs" / "figures" / "lora_path.svg"
    figure.write_text('<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><title>v1</title></svg>\n')
    path = root / "notebooks" / "03_lora.ipynb"
    nb = json.loads(path.read_text())
    nb["cells"][2]["source"] = ["## The path\n", "\n", "![LoRA beside W0](../docs/figures/lora_path.svg)\n"]
    path.write_text(json.dumps(nb))
    assert sync.main([], root) == 0
    cell = json.loads(path.read_text())["cells"][3]  # after the install cell
    assert "".join(cell["source"]).endswith("![LoRA beside W0](attachment:lora_path.svg)\n")
    stored = cell["attachments"]["lora_path.svg"]["image/svg+xml"]
    assert base64.b64decode(stored) == figure.read_bytes()
    assert _check(root) == (0, "")

    figure.write_text(figure.read_text().replace("v1", "v2"))  # `make figures` redrew it: the copy is stale
    code, report = _check(root)
    assert code == 1 and "03_lora.ipynb: the diagram (lora_path)" in report and "not embedded" in report
    assert sync.main([], root) == 0 and _check(root) == (0, "")

    figure.unlink()
    with pytest.raises(FileNotFoundError, match=r"docs/figures/lora_path.svg does not exist.*make figures"):
        sync.main([], root)
