"""Run the Khronos glTF-Validator (npm `gltf-validator`, via tests/gltf_validate.mjs) from tests."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).with_name("gltf_validate.mjs")


def validator_missing() -> str | None:
    """Why the validator cannot run here (a reason for pytest.skip), or None when it can."""
    if shutil.which("node") is None:
        return "node is not installed: the glTF-Validator runs on Node.js (apt-get install nodejs)"
    if not (REPO_ROOT / "node_modules" / "gltf-validator").is_dir():
        return "node_modules/gltf-validator is missing: run `npm ci` in the repository root"
    return None


def validate_glb(path: Path) -> dict:
    """The validator's JSON report for the GLB at `path` (report["issues"]["numErrors"], ...).

    Raises RuntimeError when the validator cannot run or cannot read the file at all.
    """
    reason = validator_missing()
    if reason:
        raise RuntimeError(reason)
    completed = subprocess.run(
        ["node", str(SCRIPT), str(Path(path).resolve())],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )
    # Exit status 1 means "validated, with errors": the report is still on stdout.
    if completed.returncode not in (0, 1):
        raise RuntimeError(f"gltf_validate.mjs failed ({completed.returncode}): {completed.stderr}")
    return json.loads(completed.stdout)


def issue_summary(report: dict) -> str:
    """The report's messages, one per line, for assertion messages."""
    messages = report.get("issues", {}).get("messages", [])
    return "\n".join(
        f"[{m.get('severity')}] {m.get('code')} {m.get('pointer', '')}: {m.get('message')}"
        for m in messages
    )
