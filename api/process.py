"""`recon serve` as a child process on a free port: for tests, benchmarks and demos."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def recon_command(*args: str) -> list[str]:
    """The `recon` command run by this interpreter (works without the script on PATH)."""
    return [sys.executable, "-m", "api.cli", *args]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServiceProcess:
    """The API (and, unless `worker=False`, its embedded worker) serving `storage` from a
    child process; `env` adds RECON_* settings. It listens on `host`:`port` (a free localhost
    port by default) and logs beside the storage folder, or to this terminal (`log=False`)."""

    def __init__(
        self,
        storage: Path,
        *,
        env: dict[str, str] | None = None,
        worker: bool = True,
        host: str = "127.0.0.1",
        port: int | None = None,
        log: bool = True,
    ) -> None:
        self.storage = Path(storage)
        self.env = {**os.environ, "RECON_STORAGE_DIR": str(self.storage), **(env or {})}
        self.worker = worker
        self.host, self.port = host, port
        self.log_path = self.storage.parent / f"{self.storage.name}-server.log" if log else None
        self.process: subprocess.Popen | None = None
        self.origin = ""

    @property
    def url(self) -> str:
        return f"{self.origin}/api/v1"

    def create_merchant(self, name: str) -> str:
        """A new merchant's API key."""
        return subprocess.run(
            recon_command("admin", "create-merchant", name),
            env=self.env, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip

    def start(self, timeout_s: float = 60.0) -> None:
        port = self.port or free_port()
        args = ["serve", "--host", self.host, "--port", str(port)]
        args += [] if self.worker else ["--no-worker"]
        self.storage.parent.mkdir(parents=True, exist_ok=True)
        if self.log_path is None:
            self.process = subprocess.Popen(recon_command(*args), env=self.env)
        else:
            with self.log_path.open("a") as log:
                self.process = subprocess.Popen(
                    recon_command(*args), env=self.env, stdout=log, stderr=subprocess.STDOUT
                )
        self.origin = f"http://{self.host}:{port}"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):  # a busy machine
                time.sleep(0.2)
        raise RuntimeError(f"the server did not start:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(sig)
        return self.process.wait(30)

    def log(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text()[-5000:]

    def __enter__(self) -> ServiceProcess:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
