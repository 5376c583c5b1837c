"""Start-up cost: third-party subpackages the library never uses load on first use only."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from types import ModuleType

# `import open3d` always imports open3d.ml (scikit-learn, its datasets) and open3d.visualization
# (Dash, pandas, Plotly): 2.5 of its 3 CPU-s and a second of teardown at exit, for parts recon
# never calls (it uses open3d.core, .t, .geometry, .pipelines, .io, .utility).
DEFERRED_MODULES = ("open3d.ml", "open3d.visualization")


class DeferredFinder(importlib.abc.MetaPathFinder):
    """Finds `names` as usual, but their code runs only when one of their attributes is read
    (importlib.util.LazyLoader): `import open3d.ml` costs nothing, `open3d.ml.torch` still works."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = frozenset(names)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.names:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = importlib.util.LazyLoader(spec.loader)
        return spec


def defer_unused_modules(names: Sequence[str] = DEFERRED_MODULES) -> None:
    """Install the finder once (before the modules' parents are imported, or it changes
    nothing)."""
    if not any(isinstance(finder, DeferredFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, DeferredFinder(names))
