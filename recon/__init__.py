"""Product photos to textured, real-scale 3D assets (GLB, USDZ) for web shops and AR."""

from importlib.metadata import PackageNotFoundError, version

from recon.lazy_imports import defer_unused_modules

defer_unused_modules()

try:
    __version__ = version("recon")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
