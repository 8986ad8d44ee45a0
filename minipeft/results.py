"""Results that travel between notebooks: small JSON files in ``results/`` at the repository root.

``results/`` is ignored by git; ``MINIPEFT_RESULTS_DIR`` moves it. :func:`save_results` writes one file with the
profile and base model it was measured with; :func:`load_results` reads it back only for the same profile.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from .paths import REPO_ROOT
from .profiles import Profile, get_profile

RESULTS_DIR = Path(os.environ.get("MINIPEFT_RESULTS_DIR", REPO_ROOT / "results"))


def results_path(name: str, results_dir: str | Path | None = None) -> Path:
    return Path(results_dir or RESULTS_DIR) / f"{name}.json"


def save_results(name: str, results: dict, profile: str | Profile | None = None,
                 results_dir: str | Path | None = None) -> Path:
    """Write ``results`` as ``results/<name>.json`` with the profile and base model they were measured with."""
    profile = get_profile(profile)
    path = results_path(name, results_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"name": name, "profile": profile.name, "base_model": profile.base_model, "dry_run": profile.dry_run,
              "created": datetime.now(UTC).isoformat(timespec="seconds"), "results": results}
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    return path


def load_results(name: str, profile: str | Profile | None = None, results_dir: str | Path | None = None
                 ) -> dict | None:
    """The results saved under ``name`` with the same profile and base model, and a dry run's only by a dry run;
    else ``None`` (and a one-line reason)."""
    profile = get_profile(profile)
    path = results_path(name, results_dir)
    if not path.is_file():
        print(f"No saved results {path.name} in {path.parent}: recomputing.")
        if "google.colab" in sys.modules:  # one runtime per notebook: another notebook's results are never here
            print(f"On Colab each notebook runs in its own runtime, so results that another notebook saved are not "
                  f"here, and this cell now recomputes a reduced version of them. Quick "
                  f"path: in the other notebook's runtime download results/{path.name} (Files panel), upload it "
                  f"here to {path.parent}/, and run this cell again.")
        return None
    record = json.loads(path.read_text())
    if record.get("profile") != profile.name:
        print(f"{path.name} was measured with profile {record.get('profile')!r}, not {profile.name!r}: recomputing.")
        return None
    if record.get("base_model", profile.base_model) != profile.base_model:
        print(f"{path.name} was measured on {record['base_model']}, not {profile.base_model}: recomputing.")
        return None
    if record.get("dry_run", False) != profile.dry_run:
        made, now = ("a dry run", "a real run") if record.get("dry_run") else ("a real run", "a dry run")
        print(f"{path.name} comes from {made} and this is {now}: recomputing.")
        return None
    return record["results"]
