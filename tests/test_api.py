"""The Flask app factory."""

from __future__ import annotations

import recon
from api import create_app


def test_health_reports_the_version() -> None:
    client = create_app({"TESTING": True}).test_client()
    response = client.get("/api/v1/health")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "version": recon.__version__}


def test_config_comes_from_recon_environment_variables(monkeypatch) -> None:
    monkeypatch.setenv("RECON_STORAGE_DIR", "/srv/recon")
    assert create_app().config["STORAGE_DIR"] == "/srv/recon"
    assert create_app({"STORAGE_DIR": "/tmp/x"}).config["STORAGE_DIR"] == "/tmp/x"
