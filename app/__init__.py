"""airscene service: FastAPI app (``app.main``), CLI (``app.cli``) and client (``app.client``)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("airscene")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0.0.0+local"
