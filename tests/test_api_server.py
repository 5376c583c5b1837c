"""The real service: `recon serve` in its own process, a sample capture uploaded over HTTP and
reconstructed by the embedded worker; and a server killed mid-job that resumes it on restart."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from pathlib import Path

import pytest
import requests
import trimesh

from api.process import ServiceProcess
from tests.conftest import SAMPLE_CAPTURES_DIR

CAPTURE = SAMPLE_CAPTURES_DIR / "cereal_box" / "images"
JOB_TIMEOUT_S = 900  # a 2-core CI machine reconstructs the sample in about a minute


class Server(ServiceProcess):
    """The service, with the calls these tests make."""

    def merchant(self, name: str) -> dict:
        return {"Authorization": f"Bearer {self.create_merchant(name)}"}

    def upload(self, headers: dict, **form) -> dict:
        photos = sorted(CAPTURE.glob("*.jpg"))
        files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in photos]
        response = requests.post(
            f"{self.url}/jobs", headers=headers, files=files, data=form, timeout=60
        )
        assert response.status_code == 202, response.text
        return response.json()

    def job(self, headers: dict, job_id: str) -> dict:
        response = requests.get(f"{self.url}/jobs/{job_id}", headers=headers, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def wait(self, headers: dict, job_id: str, until) -> tuple[dict, list[dict]]:
        """Poll the job until `until(job)`; the job and every state seen."""
        seen = []
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while time.monotonic() < deadline:
            job = self.job(headers, job_id)
            seen.append(job)
            if until(job):
                return job, seen
            if job["state"] in ("failed", "cancelled"):
                raise AssertionError(f"job {job['state']}: {job['error']}\n{self.log()}")
            time.sleep(0.5)
        raise AssertionError(f"job {job_id} still {seen[-1]['state']}:\n{self.log()}")


@pytest.fixture
def server(tmp_path):
    server = Server(tmp_path / "storage", env={"RECON_WORKER_POLL_S": "0.2"})
    yield server
    server.stop(signal.SIGKILL)


def test_a_capture_uploaded_over_http_becomes_a_model_only_its_merchant_sees(server) -> None:
    alice, bob = server.merchant("alice"), server.merchant("bob")
    server.start()
    job = server.upload(alice, preset="preview", name="Cereal", height_m="0.3")
    done, seen = server.wait(alice, job["id"], lambda j: j["state"] == "succeeded")
    progress = [j["progress"] for j in seen]
    assert progress == sorted(progress)  # never goes backwards
    assert {"sfm", "depth", "texture"} <= {j["stage"] for j in seen}
    assert done["progress"] == 1.0
    assert any(j["eta_s"] for j in seen)

    model = requests.get(f"{server.url}/models/{done['model_id']}", headers=alice).json()
    assert model["summary"]["units"] == "metre"
    assert model["summary"]["bbox"][1] == pytest.approx(0.3, rel=1e-3)  # the height given
    glb_url = server.origin + model["files"]["model.glb"]["url"]
    glb = requests.get(glb_url, headers=alice, timeout=30)
    assert glb.status_code == 200
    assert glb.headers["Content-Type"] == "model/gltf-binary"
    scene = trimesh.load(trimesh.util.wrap_as_stream(glb.content), file_type="glb")
    mesh = scene.to_mesh() if isinstance(scene, trimesh.Scene) else scene
    assert len(mesh.faces) > 5000
    assert mesh.visual.material.baseColorTexture is not None

    for path in (f"/jobs/{job['id']}", f"/models/{done['model_id']}",
                 f"/models/{done['model_id']}/files/model.glb"):  # fmt: skip
        response = requests.get(server.url + path, headers=bob, timeout=10)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"
    assert requests.get(f"{server.url}/public/models/{done['model_id']}").status_code == 404
    assert server.stop() == 0  # SIGTERM: a clean stop


def test_a_job_survives_the_server_being_killed(server) -> None:
    alice = server.merchant("alice")
    server.start()
    job = server.upload(alice, preset="preview")
    server.wait(alice, job["id"], lambda j: j["stage"] in ("depth", "fusion", "mesh", "texture"))
    work = server.storage / "jobs" / job["id"] / "work"
    sfm_before = json.loads((work / "state.json").read_text())["sfm"]
    database = sqlite3.connect(server.storage / "recon.db")
    (job_pid,) = database.execute(
        "select worker_pid from jobs where id = ?", (job["id"],)
    ).fetchone()
    database.close()
    server.stop(signal.SIGKILL)
    # The job's process dies with the server (no unsupervised writer is left behind).
    deadline = time.monotonic() + 10
    while Path(f"/proc/{job_pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{job_pid}").exists()

    server.start()
    done, _ = server.wait(alice, job["id"], lambda j: j["state"] == "succeeded")
    assert done["attempts"] == 2
    assert any("resumed" in warning for warning in done["warnings"])
    # Resumed from its checkpoints: structure-from-motion was not run again (the report's
    # timing is the first run's); the checkpoints are gone once the model is published.
    report = requests.get(
        f"{server.url}/models/{done['model_id']}/files/report.json", headers=alice, timeout=30
    ).json()
    assert report["timings_s"]["sfm"] == pytest.approx(sfm_before["seconds"], abs=1e-3)
    assert not work.exists()
    glb = requests.get(
        f"{server.url}/models/{done['model_id']}/files/model.glb", headers=alice, timeout=30
    )
    assert glb.status_code == 200
    assert glb.content[:4] == b"glTF"


def test_a_running_job_can_be_cancelled_and_an_overlong_one_is_stopped(tmp_path) -> None:
    server = Server(tmp_path / "storage", env={"RECON_WORKER_POLL_S": "0.2"})
    alice = server.merchant("alice")
    with server:
        job = server.upload(alice, preset="preview")
        server.wait(alice, job["id"], lambda j: j["state"] == "running" and j["stage"])
        response = requests.post(f"{server.url}/jobs/{job['id']}/cancel", headers=alice)
        assert response.status_code == 202
        started = time.monotonic()
        done, _ = server.wait(alice, job["id"], lambda j: j["state"] == "cancelled")
        assert time.monotonic() - started < 15
        assert done["model_id"] is None

    overlong = Server(tmp_path / "storage2", env={"RECON_WORKER_POLL_S": "0.2",
                                                  "RECON_JOB_TIMEOUT_S": "3"})  # fmt: skip
    alice = overlong.merchant("alice")
    with overlong:
        job = overlong.upload(alice, preset="preview")
        deadline = time.monotonic() + 60
        while (state := overlong.job(alice, job["id"]))["state"] != "failed":
            assert time.monotonic() < deadline, state
            time.sleep(0.3)
        assert state["error"]["code"] == "timeout"
        assert "preview" in state["error"]["message"]
