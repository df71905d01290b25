"""resx: what Python costs you compared with LibTorch C++, measured like for like.

Every module is found from its import name (the folder is the package): resx.X is resnet_py/resx/X.py
(or X/), resx.export.X is export/resx/export/X.py; resx._cpp and resx-cpp are built from resnet_cpp/.
"""

from importlib.metadata import PackageNotFoundError, version
from pkgutil import extend_path

# resx.export lives in export/resx/: a source tree on sys.path (resnet_py/ and export/) is one package, as
# the installed one is.
__path__ = extend_path(__path__, __name__)

try:
    __version__ = version("resx")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
