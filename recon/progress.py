"""Progress events: the pipeline reports (stage, fraction, message); callers show them."""

from __future__ import annotations

from collections.abc import Callable

# progress(stage, fraction of that stage done in [0, 1], short message)
ProgressCallback = Callable[[str, float, str], None]
