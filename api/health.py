"""Liveness: tells a load balancer or a merchant's script that the service answers."""

from __future__ import annotations

from flask import Blueprint, jsonify

import recon

blueprint = Blueprint("health", __name__)


@blueprint.get("/health")
def health():
    return jsonify(status="ok", version=recon.__version__)
