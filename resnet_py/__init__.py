"""resx: what Python costs you compared with LibTorch C++, measured like for like.

Import map (source folder -> import name):
    resnet_py/  -> resx          models, data, Python runtime, CLI
    export/     -> resx.export   TorchScript export, manifest, fingerprint
    resnet_cpp/ -> resx._cpp     C++ runtime (nanobind), plus the resx-cpp executable
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("resx")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
