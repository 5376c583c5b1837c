"""Benchmark scale-out: products per hour through the API with 1 and with 2 Celery workers.

For each worker count W, starts a Redis broker, `recon serve` (jobs sent to the broker) and W
`recon worker` processes on this machine with a fresh storage folder, uploads N jobs (the
bundled sample captures in turn) at once, and times the first upload to the last job's end:
products/hour = N / that time. Each reconstruction already uses every core, so on one machine a
second worker mostly overlaps the single-threaded parts of the jobs (and the uploads); the gain
is real when the workers run on machines of their own.

    python benchmarks/throughput.py --out out/bench/throughput.json [--products 4]
        [--preset preview] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import time
from pathlib import Path

import requests

from api.cluster import RedisServer, WorkerProcess
from api.process import ServiceProcess

CAPTURES = Path(__file__).resolve().parents[1] / "sample_captures"


def run(workers: int, products: int, preset: str, folder: Path) -> dict:
    with RedisServer(folder / "redis") as redis:
        env = {
            "RECON_BROKER_URL": redis.url,
            "RECON_WORKER_POLL_S": "0.5",
            "RECON_STORAGE_DIR": str(folder / "storage"),
        }
        server = ServiceProcess(folder / "storage", env=env)
        headers = {"Authorization": f"Bearer {server.create_merchant('bench')}"}
        pool = [WorkerProcess(folder / f"worker{i}.log", env) for i in range(workers)]
        with server:
            try:
                for worker in pool:
                    worker.start()
                captures = sorted(
                    p / "images" for p in CAPTURES.iterdir() if (p / "images").is_dir()
                )
                started = time.perf_counter()
                job_ids = []
                for index in range(products):
                    photos = sorted(captures[index % len(captures)].glob("*.jpg"))
                    response = requests.post(
                        f"{server.url}/jobs",
                        headers=headers,
                        data={"preset": preset},
                        files=[("files", (p.name, p.read_bytes(), "image/jpeg")) for p in photos],
                        timeout=120,
                    )
                    response.raise_for_status()
                    job_ids.append(response.json()["id"])
                states = {}
                while len(states) < len(job_ids):
                    for job_id in job_ids:
                        if job_id in states:
                            continue
                        job = requests.get(f"{server.url}/jobs/{job_id}", headers=headers).json()
                        if job["state"] not in ("queued", "running"):
                            states[job_id] = job["state"]
                    time.sleep(1)
                seconds = time.perf_counter() - started
            finally:
                for worker in pool:
                    worker.stop(signal.SIGKILL)
    succeeded = sum(state == "succeeded" for state in states.values())
    return {
        "workers": workers,
        "products": products,
        "succeeded": succeeded,
        "seconds": round(seconds, 1),
        "products_per_hour": round(succeeded * 3600 / seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON results file")
    parser.add_argument("--products", type=int, default=4, help="jobs per run (4)")
    parser.add_argument("--preset", default="preview", help="detail level (preview)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="counts (1 2)")
    args = parser.parse_args()
    runs = []
    for workers in args.workers:
        with tempfile.TemporaryDirectory(prefix="recon-throughput-") as folder:
            result = run(workers, args.products, args.preset, Path(folder))
        runs.append(result)
        print(
            f"{workers} worker(s): {result['succeeded']}/{result['products']} products in "
            f"{result['seconds']:.0f} s = {result['products_per_hour']:.0f} products/hour"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "preset": args.preset,
                "cpu_count": os.cpu_count(),
                "runs": runs,
            },
            indent=2,
        )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
