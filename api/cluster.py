"""A Redis broker and `recon worker` processes on this machine: for tests and benchmarks."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from api.process import free_port, recon_command


class RedisServer:
    """`redis-server` on a free localhost port, keeping nothing on disk."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.port = 0
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 20.0) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise FileNotFoundError(
                "redis-server is not installed: tools/install_system_packages.sh"
            )
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as connection:
                    connection.sendall(b"PING\r\n")
                    if connection.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class WorkerProcess:
    """`recon worker` in a child process; `env` holds its RECON_* settings."""

    def __init__(self, log_path: Path, env: dict[str, str], *, concurrency: int = 1) -> None:
        self.log_path = Path(log_path)
        self.env = {**os.environ, **env}
        self.concurrency = concurrency
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        return self.process.pid if self.process else 0

    def start(self, timeout_s: float = 60.0) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.write_text("")
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                recon_command("worker", "--concurrency", str(self.concurrency)),
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.process.poll() is None:
            if " ready." in self.log():
                return
            time.sleep(0.2)
        raise RuntimeError(f"the worker did not start:\n{self.log()}")

    def runs(self, pid: int) -> bool:
        """Whether process `pid` is this worker or one of its descendants."""
        while pid > 1:
            if pid == self.pid:
                return True
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                return False
            pid = int(
                next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:"))
            )
        return False

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text()[-5000:] if self.log_path.exists() else ""
