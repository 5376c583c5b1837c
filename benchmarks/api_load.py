"""Benchmark the API server: status polls per second, and memory under concurrent uploads.

Starts `recon serve --no-worker` (the worker's reconstructions would only add noise) on a free
port with a fresh storage folder, then measures:

- status polling: C clients each GET /api/v1/jobs/ID as fast as they can for S seconds:
  requests/s, latency percentiles, errors;
- uploads: U clients at once each POST the bundled 24-photo sample capture: all accepted?,
  wall time, and the server's peak resident memory (VmHWM) before and after.

The client threads share this machine's cores with the server, so requests/s is a floor.

    python benchmarks/api_load.py --out out/bench/api.json [--clients 8] [--seconds 10]
        [--uploads 20]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests

from api.process import ServiceProcess

CAPTURE = Path(__file__).resolve().parents[1] / "sample_captures" / "cereal_box" / "images"


def peak_rss_mb(pid: int) -> float:
    """A process's peak resident memory so far (Linux's VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc: Linux only")


def upload_sample(url: str, headers: dict, photos: list[tuple[str, bytes]]) -> int:
    files = [("files", (name, data, "image/jpeg")) for name, data in photos]
    return requests.post(f"{url}/jobs", headers=headers, files=files, timeout=300).status_code


def poll(url: str, headers: dict, seconds: float) -> tuple[list[float], int]:
    latencies, errors = [], 0
    with requests.Session() as session:
        session.headers.update(headers)
        end = time.perf_counter() + seconds
        while (start := time.perf_counter()) < end:
            response = session.get(url, timeout=10)
            latencies.append(time.perf_counter() - start)
            errors += response.status_code != 200
    return latencies, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/bench/api.json"))
    parser.add_argument("--clients", type=int, default=8, help="concurrent status pollers")
    parser.add_argument("--seconds", type=float, default=10.0, help="polling time")
    parser.add_argument("--uploads", type=int, default=20, help="concurrent uploads")
    args = parser.parse_args()

    photos = [(p.name, p.read_bytes()) for p in sorted(CAPTURE.glob("*.jpg"))]
    results: dict = {"capture": {"photos": len(photos), "bytes": sum(len(d) for _, d in photos)}}
    with tempfile.TemporaryDirectory() as tmp:
        # No rate limits: this measures the server, not the limiter's refusals.
        env = {"RECON_RATE_LIMIT_ENABLED": "false"}
        with ServiceProcess(Path(tmp) / "storage", env=env, worker=False) as server:
            headers = {"Authorization": f"Bearer {server.create_merchant('bench')}"}
            assert server.process is not None
            pid = server.process.pid
            idle_mb = peak_rss_mb(pid)

            job_id = requests.post(
                f"{server.url}/jobs", headers=headers,
                files=[("files", (n, d, "image/jpeg")) for n, d in photos], timeout=60,
            ).json()["id"]  # fmt: skip
            status_url = f"{server.url}/jobs/{job_id}"
            poll(status_url, headers, 1.0)  # warm-up
            with ThreadPoolExecutor(args.clients) as pool:
                runs = list(pool.map(lambda _: poll(status_url, headers, args.seconds),
                                     range(args.clients)))  # fmt: skip
            latencies = np.concatenate([np.asarray(r[0]) for r in runs]) * 1000
            results["status_polling"] = {
                "clients": args.clients,
                "seconds": args.seconds,
                "requests": len(latencies),
                "requests_per_s": round(len(latencies) / args.seconds, 1),
                "latency_ms": {
                    "p50": round(float(np.percentile(latencies, 50)), 2),
                    "p95": round(float(np.percentile(latencies, 95)), 2),
                    "max": round(float(latencies.max()), 2),
                },
                "errors": sum(r[1] for r in runs),
            }

            before_mb = peak_rss_mb(pid)
            barrier = threading.Barrier(args.uploads)

            def one_upload(_: int) -> int:
                barrier.wait()  # all at once
                return upload_sample(server.url, headers, photos)

            start = time.perf_counter()
            with ThreadPoolExecutor(args.uploads) as pool:
                statuses = list(pool.map(one_upload, range(args.uploads)))
            results["concurrent_uploads"] = {
                "uploads": args.uploads,
                "accepted": statuses.count(202),
                "statuses": sorted(set(statuses)),
                "wall_s": round(time.perf_counter() - start, 2),
                "megabytes_sent": round(args.uploads * results["capture"]["bytes"] / 2**20, 1),
                "server_peak_rss_mb": {
                    "idle": round(idle_mb, 1),
                    "before_uploads": round(before_mb, 1),
                    "after_uploads": round(peak_rss_mb(pid), 1),
                },
            }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
