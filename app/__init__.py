"""REST inference service for the IMDB sentiment and MNIST digit Keras models.

``__version__`` is the version in ``pyproject.toml``, read from the installed package's
metadata (``make run`` installs the project; the image carries its metadata too): the one
version number, which ``GET /v2`` and the OpenAPI document show.
"""

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "keras-inference-service"

try:
    __version__ = version(DISTRIBUTION)
except PackageNotFoundError:  # a source tree run without installing the project
    __version__ = "0+unknown"
