"""Typed errors that tell the user what went wrong and what to do about it."""

from __future__ import annotations


class ReconError(Exception):
    """Base class for every error the library raises on purpose."""


class InputError(ReconError):
    """A file or argument given by the user cannot be used (missing, unreadable, wrong kind)."""


class CaptureError(ReconError):
    """The photos themselves cannot make a model (too few, no overlap, ...)."""


class QualityError(ReconError):
    """The model was made, but the report's quality figures say it is wrong: it is not
    published, and OUT/report.json says status "failed" with the reasons."""


class StageError(ReconError):
    """A pipeline stage failed; `stage` names it."""

    def __init__(self, stage: str, why: str) -> None:
        super().__init__(f"{stage}: {why}")
        self.stage = stage
        self.why = why
