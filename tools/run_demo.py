"""`make run`: the service with a demo merchant and the bundled sample published, in the foreground.

Starts `recon serve` with its storage under OUT/storage, makes a merchant `demo` (its key kept in
OUT/demo_api_key, mode 600), uploads sample_captures/cereal_box if the demo has no model yet,
publishes it, prints the viewer, storefront and merchant page URLs, and serves until Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from api.process import ServiceProcess, recon_command

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE = REPO_ROOT / "sample_captures" / "cereal_box" / "images"
SAMPLE_HEIGHT_M = 0.28  # the procedural cereal box is 28 cm tall (its truth/mesh.ply)
MERCHANT = "demo"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "out")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    storage, key_path = args.out / "storage", args.out / "demo_api_key"
    with socket.socket() as probe:  # another server there would answer in this one's place
        if probe.connect_ex((args.host, args.port)) == 0:
            raise SystemExit(f"port {args.port} is taken: stop that server or `make run PORT=...`")
    signal.signal(signal.SIGTERM, _interrupt)
    server = ServiceProcess(storage.resolve(), host=args.host, port=args.port, log=False)
    try:
        try:
            server.start()
        except RuntimeError:
            raise SystemExit(f"recon serve did not answer on {server.origin}") from None
        origin = server.origin
        headers = {"Authorization": f"Bearer {demo_key(server.env, key_path, origin)}"}
        model = sample_model(origin, headers)
        if not model["published"]:
            model = checked(requests.post(
                f"{origin}/api/v1/models/{model['id']}/publish", headers=headers, timeout=30
            ))  # fmt: skip
        print(
            f"\nThe demo shop is ready (storage: {storage}).\n"
            f"  viewer      {origin}/v/{model['id']}\n"
            f"  storefront  {origin}/shop/{MERCHANT}\n"
            f"  merchant    {origin}/app  (sign in with the key in {key_path.resolve()})\n"
            "Serving until Ctrl-C.",
            flush=True,
        )
        return server.process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()


def _interrupt(_signum, _frame) -> None:
    raise KeyboardInterrupt


def demo_key(env: dict, key_path: Path, origin: str) -> str:
    """The demo merchant's key from `key_path`, or a new one (new merchant, or a rotated key
    when the file was lost) written there readable only by its owner."""
    if key_path.is_file():
        key = key_path.read_text().strip()
        answer = requests.get(
            f"{origin}/api/v1/merchant", headers={"Authorization": f"Bearer {key}"}, timeout=10
        )
        if answer.ok:
            return key
    made = subprocess.run(recon_command("admin", "create-merchant", MERCHANT), env=env,
                          capture_output=True, text=True)  # fmt: skip
    if made.returncode != 0:  # the merchant exists, but its key is not in the file
        made = subprocess.run(recon_command("admin", "rotate-key", MERCHANT), env=env,
                              capture_output=True, text=True, check=True)  # fmt: skip
    key = made.stdout.strip()
    key_path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as stream:
        stream.write(key + "\n")
    key_path.chmod(0o600)  # an older file keeps its mode through os.open
    print(f"Made the demo merchant's API key; it is in {key_path.resolve()} (mode 600).")
    return key


def sample_model(origin: str, headers: dict) -> dict:
    """The demo's newest model; the sample capture is reconstructed first if there is none."""
    api = f"{origin}/api/v1"
    models = checked(requests.get(f"{api}/models?per_page=1", headers=headers, timeout=10))
    if models["models"]:
        return models["models"][0]
    jobs = checked(requests.get(f"{api}/jobs?per_page=1", headers=headers, timeout=10))["jobs"]
    if jobs and jobs[0]["state"] in ("queued", "running"):
        job = jobs[0]
        print(f"The sample is still being reconstructed (job {job['id']}).")
    else:
        photos = sorted(SAMPLE.glob("*.jpg"))
        print(f"Uploading the sample capture ({len(photos)} photos of a cereal box)...")
        files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in photos]
        form = {"preset": "preview", "name": "Cereal box (sample)", "height_m": SAMPLE_HEIGHT_M}
        job = checked(requests.post(f"{api}/jobs", headers=headers, files=files, data=form,
                                    timeout=120))  # fmt: skip
    stage = None
    while job["state"] in ("queued", "running"):
        if job["stage"] != stage:
            stage = job["stage"]
            print(f"  {job['state']}: {stage or 'waiting'} ({job['progress']:.0%})", flush=True)
        time.sleep(1)
        job = checked(requests.get(f"{api}/jobs/{job['id']}", headers=headers, timeout=10))
    if job["state"] != "succeeded":
        error = job["error"] or {}
        raise SystemExit(f"the sample's reconstruction {job['state']}: {error.get('message')}")
    print("  succeeded", flush=True)
    return checked(requests.get(f"{api}/models/{job['model_id']}", headers=headers, timeout=10))


def checked(response: requests.Response) -> dict:
    if not response.ok:
        raise SystemExit(f"{response.request.method} {response.url}: {response.status_code} "
                         f"{response.text[:500]}")  # fmt: skip
    return response.json()


if __name__ == "__main__":
    sys.exit(main())
