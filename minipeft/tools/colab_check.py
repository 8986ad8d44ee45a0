"""`make colab-check`: are the Colab badges and the install cell's clone address live? (By hand, with internet.)

Every badge opens ``colab.research.google.com/github/<owner>/<repo>/blob/<ref>/notebooks/<file>``, which Colab
reads from GitHub; this fetches each notebook at that GitHub address (``raw.githubusercontent.com``) and asks git
for the branch or tag at the clone address (``git ls-remote``), and fails when any is missing. Without internet
(github.com does not answer) it prints "not checked" and fails, so that a check that did not run never reads as a
pass (CI does not call it). The addresses come from pyproject.toml, as everywhere else (``scripts/sync_notebooks.py``).

    python scripts/colab_check.py
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from minipeft.paths import REPO_ROOT
from minipeft.tools import sync_notebooks as sync


def github_reachable(timeout: float = 3.0) -> bool:
    try:
        socket.create_connection(("github.com", 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def url_exists(url: str, timeout: float = 15.0) -> bool:
    """True for HTTP 200, False for 404; other failures raise (they say nothing about the address)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return True
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return False
        raise


def ref_exists(url: str, ref: str) -> bool:
    """The repository answers at ``url`` and has a branch or tag ``ref`` (``git ls-remote``, no password prompt)."""
    result = subprocess.run(["git", "ls-remote", "--exit-code", url, f"refs/heads/{ref}", f"refs/tags/{ref}"],
                            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"}, capture_output=True, timeout=60)
    return result.returncode == 0


def raw_url(notebook: str, root: Path = REPO_ROOT) -> str:
    """Where GitHub serves ``notebooks/<notebook>`` at the ref the badges name."""
    url, ref = sync.repository(root)
    owner_repo = url.removeprefix("https://github.com/")
    return f"https://raw.githubusercontent.com/{owner_repo}/{ref}/notebooks/{notebook}"


def main(argv: list[str] | None = None, root: Path = REPO_ROOT, reachable: Callable[[], bool] = github_reachable,
         exists: Callable[[str], bool] = url_exists, has_ref: Callable[[str, str], bool] = ref_exists) -> int:
    url, ref = sync.repository(root)
    if not reachable():
        print("colab-check: not checked: github.com cannot be reached from here; run `make colab-check` where there "
              "is internet.")
        return 1
    notebooks = sorted(path.name for path in (root / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    notebooks += sorted(f"{sync.ZH_DIR}/{path.name}" for path in (root / "notebooks" / sync.ZH_DIR).glob(
        "[0-9][0-9]_*.ipynb"))  # the Chinese edition's badges
    missing = []
    if not has_ref(url, ref):
        missing.append(f"clone address {url} has no branch or tag {ref!r} (or is not a public repository)")
    for notebook in notebooks:
        if not exists(raw_url(notebook, root)):
            missing.append(f"badge {sync.colab_url(notebook, root)}: {raw_url(notebook, root)} is not there")
    for line in missing:
        print(f"MISSING {line}")
    if missing:
        print(f"colab-check: {len(missing)} of {len(notebooks) + 1} addresses missing. Publish the course at {url} "
              f"(push branch or tag {ref}), or set [project.urls] Repository in pyproject.toml to where it is, run "
              "`make colab` and push.")
        return 1
    print(f"colab-check: the clone address and all {len(notebooks)} badges answer ({url}, {ref}).")
    if not sync.published(root):
        print("colab-check: set published = true under [tool.minipeft.colab] in pyproject.toml and run `make colab`, "
              "so that the badges stop saying 'publish first'.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
