"""resx.export: TorchScript export of resx models, with a manifest (see export/torchscript.py)."""
