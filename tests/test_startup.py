"""Start-up cost of the `recon` command: subpackages the library never uses load on use only."""

from __future__ import annotations

import builtins
import os
import subprocess
import sys

from recon.lazy_imports import DeferredFinder
from tests.conftest import REPO_ROOT


def test_a_deferred_module_runs_only_when_used(tmp_path, monkeypatch) -> None:
    package = tmp_path / "deferpkg"
    package.mkdir()
    (package / "__init__.py").write_text("import deferpkg.heavy\n")
    (package / "heavy.py").write_text("import builtins\nbuiltins.deferpkg_ran = True\nVALUE = 7\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "meta_path", [DeferredFinder(["deferpkg.heavy"]), *sys.meta_path])
    try:
        import deferpkg

        assert not hasattr(builtins, "deferpkg_ran")  # imported, not run
        assert deferpkg.heavy.VALUE == 7  # first use runs it
        assert builtins.deferpkg_ran
    finally:
        for name in ("deferpkg", "deferpkg.heavy"):
            sys.modules.pop(name, None)
        if hasattr(builtins, "deferpkg_ran"):
            del builtins.deferpkg_ran


def fresh_interpreter_lines(code: str) -> list[str]:
    """The first two lines `code` prints in a new Python process (a clean sys.modules)."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split("\n")[:2]


def test_the_pipeline_imports_without_open3d_ml_and_viewer() -> None:
    """open3d imports open3d.ml (scikit-learn) and open3d.visualization (Dash, pandas) itself:
    about 2.5 CPU-s of every run, for parts recon never calls."""
    code = (
        "import sys, recon.pipeline, open3d\n"
        "print(sorted({'sklearn', 'pandas', 'dash'} & set(sys.modules)))\n"
        "print(open3d.core.Tensor([1.0]).shape)\n"
    )
    assert fresh_interpreter_lines(code) == ["[]", "SizeVector[1]"]


def test_the_command_imports_no_web_framework() -> None:
    """The `recon` command starts in api.cli (it adds the service's verbs); a reconstruction
    needs neither Flask nor the database layer, which the app factory pulls in."""
    code = (
        "import sys, api.cli\n"
        "print(sorted({'flask', 'sqlalchemy', 'waitress'} & set(sys.modules)))\n"
        "from api import create_app, API_PREFIX\n"
        "print(callable(create_app), API_PREFIX)\n"
    )
    assert fresh_interpreter_lines(code) == ["[]", "True /api/v1"]
