"""Where a model comes from: every way to name one, in one place, for export, bench, train, eval and inspect.

    resnet18, resnet34, ...          a resx ResNet (resx.models), shaped by --stem, --layers, --width
    torchvision:NAME                 a classification builder of torchvision.models, random weights from the seed
    package.module:callable          a factory in the user's environment, keyword arguments as JSON
    path/to/file.py:callable         a factory in a file
    path/to/model.pt | model.pt2     a TorchScript file or an AOTInductor package that resx did not write

A Source builds the eager module (every kind but a file), checks that it is an image classifier resx can
run (one tensor in, N x classes out, parameters) at its input shape, and describes itself for the
manifest, so that a later process rebuilds the same module (Source.from_manifest): the fingerprint of its
graph then proves it is the same.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from resx.data import AUGMENT, IMAGE_SHAPE
from resx.errors import ConfigError, first_line
from resx.models import ARCHITECTURES, ModelConfig, build
from resx.options import json_object, option, shape3, stages

KINDS = ("builtin", "torchvision", "factory", "file")
BUILD_TIMEOUT = 300.0  # seconds a factory may take to import and build its model (RESX_BUILD_TIMEOUT)
PROBE_ENV = "RESX_PROBING"  # set in the probe's own process: it builds without probing again
_PROBED: set = set()
TORCHVISION_SHAPE = (3, 224, 224)  # what torchvision's classification weights were trained at
FILE_SUFFIXES = (".pt", ".pt2", ".pth")
SPEC_HELP = (
    "a resx ResNet (resnet18, resnet34, resnet50, resnet101, resnet152), torchvision:NAME, "
    "package.module:callable, file.py:callable, or a .pt / .pt2 file"
)


def input_shape(text: str | None, option: str = "--input-shape") -> tuple[int, int, int] | None:
    """'3,224,224' -> (3, 224, 224); None stays None; anything else is one line naming the option."""

    return None if text is None else shape3(text, option)


def file_sha1(path: Path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


@dataclass
class Source:
    """A model as the user named it, resolved. `config` for a resx ResNet; `kwargs` for a builder or a
    factory; `num_classes` None: the builder's own; `shape`: the input, C x H x W."""

    kind: str
    name: str  # resnet18 | mobilenet_v3_small | package.module:callable | /abs/file.py:callable | /abs/model.pt
    shape: tuple[int, int, int] | None  # None only for a model file given without --input-shape
    kwargs: dict = field(default_factory=dict)
    num_classes: int | None = None
    config: ModelConfig | None = None
    sha1: str | None = None  # of the factory's file, or of the model file
    weights: str | None = None  # a resx file whose own weights this model carries (not its seed's); not recorded

    # ------------------------------------------------------------------------------------- naming
    @classmethod
    def parse(
        cls,
        spec: str,
        kwargs: dict | None = None,
        num_classes: int | None = None,
        shape: tuple[int, int, int] | None = None,
        *,
        stem: str = "cifar",
        layers: list[int] | None = None,
        width: int = 64,
    ) -> Source:
        """Resolve what the user wrote; one line naming the problem when it names nothing resx can run."""
        kwargs = dict(kwargs or {})
        if not isinstance(spec, str) or not spec.strip():
            raise ConfigError(f"give a model: {SPEC_HELP}")
        spec = spec.strip()
        if spec in ARCHITECTURES:
            if kwargs:
                raise ConfigError(
                    f"--model-kwargs applies to torchvision and factory models; shape {spec} with "
                    f"--stem, --layers and --width"
                )
            config = ModelConfig(spec, 10 if num_classes is None else num_classes, stem, layers, width)
            return cls.of_config(config, shape or IMAGE_SHAPE)
        if spec.startswith("torchvision:"):
            return cls._torchvision(spec.removeprefix("torchvision:"), kwargs, num_classes, shape)
        if spec.endswith(FILE_SUFFIXES) and ":" not in Path(spec).name:
            return cls._file(Path(spec), shape)
        if ":" in spec:
            return cls._factory(spec, kwargs, num_classes, shape)
        raise ConfigError(f"unknown model '{spec}': give {SPEC_HELP}")

    @classmethod
    def _torchvision(cls, name: str, kwargs: dict, num_classes: int | None, shape) -> Source:
        from torchvision import models

        known = models.list_models(module=models)  # the classification builders
        if name not in known:
            near = [k for k in known if name.split("_")[0] in k][:5]
            hint = f" (did you mean {', '.join(near)}?)" if near else "; see torchvision.models.list_models()"
            raise ConfigError(f"torchvision:{name}: not a classification builder of torchvision {_tv()}{hint}")
        return cls("torchvision", name, shape or TORCHVISION_SHAPE, kwargs, num_classes)

    @classmethod
    def _factory(cls, spec: str, kwargs: dict, num_classes: int | None, shape) -> Source:
        where, _, attr = spec.rpartition(":")
        if not where or not attr.isidentifier():
            raise ConfigError(f"'{spec}': a factory is package.module:callable or file.py:callable")
        sha1 = None
        if where.endswith(".py"):
            path = Path(where).expanduser().resolve()
            if not path.is_file():
                raise ConfigError(f"{where}: no such file (a factory file.py:callable)")
            where, sha1 = str(path), file_sha1(path)
        return cls("factory", f"{where}:{attr}", shape or IMAGE_SHAPE, kwargs, num_classes, sha1=sha1)

    @classmethod
    def _file(cls, path: Path, shape) -> Source:
        """A model file. One resx wrote is known by its manifest: a TorchScript file or a weights export is
        the model it records (its source rebuilds it) with the file's own weights; an AOTInductor package is
        run as the file it is, at the input its manifest records. Another file is run as it is."""
        path = path.expanduser().resolve()
        if not path.is_file():
            raise ConfigError(f"{path}: no such file")
        manifest = resx_manifest(path)
        if manifest is not None and path.suffix in (".pt", ".pth"):
            source = cls.from_manifest(manifest)
            source.weights = str(path)
            return source
        if path.suffix == ".pth":
            raise ConfigError(
                f"{path}: not a resx weights export (resx reads .pth files it wrote: resx export -o FILE.pth)"
            )
        if manifest is not None and shape is None:
            shape = tuple(int(v) for v in manifest["input"]["shape"][1:])
        return cls("file", str(path), shape, sha1=file_sha1(path))  # shape None: the file does not say

    # ------------------------------------------------------------------------------------ describing
    @property
    def label(self) -> str:
        """A short name for reports and file names."""
        if self.kind == "factory":
            return self.name.rpartition(":")[2]
        return Path(self.name).stem if self.kind == "file" else self.name

    @property
    def spec(self) -> str:
        """What names it on the command line."""
        return f"torchvision:{self.name}" if self.kind == "torchvision" else self.name

    @property
    def buildable(self) -> bool:
        return self.kind != "file"

    @property
    def cpp_module(self) -> bool:
        """Whether resx writes this network in LibTorch's C++ frontend (resx::ResNet): its ResNets."""
        return self.kind == "builtin"

    @property
    def normalization(self) -> dict | None:
        """Input normalisation where the source defines it: CIFAR-10's for the ResNets, ImageNet's for
        torchvision's builders (their weights' transforms); none known for a factory or a file."""
        if self.kind == "builtin":
            return {"mean": list(AUGMENT.mean), "std": list(AUGMENT.std), "from": "CIFAR-10's training set"}
        if self.kind == "torchvision":
            from torchvision import models

            weights = models.get_model_weights(self.name)
            t = next(iter(weights)).transforms()
            return {"mean": list(t.mean), "std": list(t.std), "from": f"torchvision {weights.__name__}"}
        return None

    def to_dict(self) -> dict:
        """The manifest's "source": enough for a later process to rebuild the same module."""
        out = {"kind": self.kind, "name": self.name, "input_shape": None if self.shape is None else list(self.shape)}
        if self.kind == "builtin":
            return out | {"config": self.config.to_dict()}
        if self.kind == "torchvision":
            out["torchvision_version"] = _tv()
        out |= {"kwargs": self.kwargs, "num_classes": self.num_classes}
        return out | ({"sha1": self.sha1} if self.sha1 else {})

    def model_dict(self) -> dict:
        """The manifest's "model": a resx ResNet's config (what C++ builds its module from), else the name
        and the classes."""
        if self.kind == "builtin":
            return self.config.to_dict()
        return {"name": self.label, "num_classes": self.num_classes, "source": self.kind}

    @classmethod
    def from_dict(cls, d: dict) -> Source:
        """The inverse of to_dict (a manifest's or a checkpoint's source)."""
        try:
            shape = d.get("input_shape", IMAGE_SHAPE)
            kind, shape = d["kind"], None if shape is None else tuple(int(v) for v in shape)
            if kind == "builtin":
                return cls.of_config(ModelConfig.from_dict(d["config"]), shape)
            if kind not in KINDS:
                raise ConfigError(f"unknown model source kind '{kind}'")
            return cls(
                kind, str(d["name"]), shape, dict(d.get("kwargs") or {}), d.get("num_classes"), sha1=d.get("sha1")
            )
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"not a model source ({type(e).__name__}: {e}): {d}") from None

    @classmethod
    def from_manifest(cls, manifest: dict) -> Source:
        """The source a manifest records; a manifest from before sources names a resx ResNet."""
        if "source" in manifest:
            return cls.from_dict(manifest["source"])
        return cls.of_config(ModelConfig.from_dict(manifest["model"]))

    @classmethod
    def of_config(cls, config: ModelConfig, shape: tuple[int, int, int] | None = IMAGE_SHAPE) -> Source:
        """A resx ResNet's config as the Source it is."""
        return cls("builtin", config.name, shape, {}, config.num_classes, config)

    # -------------------------------------------------------------------------------------- building
    def build(self, seed: int | None = 0, check: bool = True) -> nn.Module:
        """The eager module, its weights a function of `seed` alone; checked (check=True) to be an image
        classifier resx runs at this shape. One line naming the problem otherwise."""
        if self.kind == "builtin":
            return build(self.config, seed=seed)
        if self.kind == "file":
            raise ConfigError(
                f"{self.name}: a model file has no eager module to rebuild; run it with the engines of its format"
            )
        if check and self.kind == "factory":
            self.probe()
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            module = self._call_builder()
        if check:
            self.check(module)
        return module

    def _call_builder(self):
        what = f"torchvision:{self.name}" if self.kind == "torchvision" else self.name
        if self.kind == "torchvision":
            from torchvision import models

            builder = lambda **kw: models.get_model(self.name, weights=None, **kw)
            kwargs = self.kwargs | ({} if self.num_classes is None else {"num_classes": self.num_classes})
        else:
            builder, kwargs = self._factory_callable(), self.kwargs
            if self.num_classes is not None and _accepts(builder, "num_classes"):
                kwargs = {"num_classes": self.num_classes} | kwargs  # a factory without it keeps its own
        try:
            module = builder(**kwargs)
        except SystemExit as e:  # the user's code ended the process: one line, not resx's exit
            raise ConfigError(
                f"{what}({_kwargs_text(kwargs)}) called sys.exit({e.code!r}) instead of returning a model"
            ) from None
        except Exception as e:  # noqa: BLE001  (the user's code: any error is theirs, told in one line)
            raise ConfigError(f"{what}({_kwargs_text(kwargs)}) raised {type(e).__name__}: {first_line(e)}") from None
        if not isinstance(module, nn.Module):
            raise ConfigError(f"{what} returned a {type(module).__name__}, not a torch.nn.Module")
        return module

    def _factory_callable(self):
        where, _, attr = self.name.rpartition(":")
        try:
            if where.endswith(".py"):
                path = Path(where)
                if not path.is_file():
                    raise ConfigError(f"{where}: no such file (the factory of this model)")
                name = f"resx_factory_{hashlib.sha1(str(path).encode()).hexdigest()[:12]}"
                spec = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module  # dataclasses and pickling look modules up by name
                spec.loader.exec_module(module)
            else:
                module = importlib.import_module(where)
        except ConfigError:
            raise
        except SystemExit as e:
            raise ConfigError(f"cannot import {where}: it called sys.exit({e.code!r}) while it was imported") from None
        except Exception as e:  # noqa: BLE001  (a module that does not import: any error, one line)
            raise ConfigError(f"cannot import {where} ({type(e).__name__}: {first_line(e)})") from None
        factory = getattr(module, attr, None)
        if not callable(factory):
            raise ConfigError(f"{where} has no callable '{attr}'")
        return factory

    def probe(self, timeout: float | None = None) -> None:
        """Import and build a factory's model once in a process of its own, with a time limit, before this
        process does: a factory that aborts, kills its process or hangs (BUILD_TIMEOUT) is then one line
        naming it rather than the end of resx. Once per process and factory."""
        key = (self.name, self.sha1, json.dumps(self.kwargs, sort_keys=True), self.num_classes)
        if key in _PROBED or os.environ.get(PROBE_ENV):
            return
        timeout = timeout or float(os.environ.get("RESX_BUILD_TIMEOUT", BUILD_TIMEOUT))
        code = "import json, sys; from resx.sources import Source; "
        code += "Source.from_dict(json.loads(sys.argv[1])).build(check=False); print('resx: built', flush=True)"
        try:
            proc = subprocess.run(
                [sys.executable, "-c", code, json.dumps(self.to_dict())],
                capture_output=True,
                text=True,
                timeout=timeout,
                env=os.environ | {PROBE_ENV: "1"},
            )
        except subprocess.TimeoutExpired:
            raise ConfigError(
                f"{self.spec}: importing and building the model took more than {timeout:.0f} s (it hangs?); resx "
                "stops a model's construction then (RESX_BUILD_TIMEOUT=SECONDS allows longer)"
            ) from None
        if proc.returncode == 0 and "resx: built" in proc.stdout:
            _PROBED.add(key)
            return
        lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
        if lines and lines[-1].startswith("resx.errors.ConfigError: "):  # the factory's error, told as here
            raise ConfigError(lines[-1].removeprefix("resx.errors.ConfigError: "))
        if proc.returncode < 0:
            why = f"its process was killed by {signal.Signals(-proc.returncode).name}"
        elif "resx: built" not in proc.stdout and proc.returncode == 0:
            why = "its process exited (status 0) before it returned a model"
        else:
            why = f"its process exited with status {proc.returncode}" + (f" ({lines[-1]})" if lines else "")
        raise ConfigError(f"{self.spec}: {why} while it imported or built the model")

    def check(self, module: nn.Module) -> None:
        """One tensor in, one [N, classes] tensor out, some parameters: what resx runs and trains."""
        what = self.spec
        if not any(True for _ in module.parameters()):
            raise ConfigError(f"{what}: the module has no parameters; resx compares networks with weights")
        required = [
            p
            for p in inspect.signature(module.forward).parameters.values()
            if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        star = any(p.kind == p.VAR_POSITIONAL for p in inspect.signature(module.forward).parameters.values())
        if len(required) > 1 or (not required and not star):
            names = ", ".join(p.name for p in required) or "none"
            raise ConfigError(
                f"{what}: forward takes {len(required)} inputs ({names}); resx runs image classifiers "
                f"of one input tensor"
            )
        out = run_at(module, self.shape, what)
        if not isinstance(out, torch.Tensor):
            raise ConfigError(
                f"{what}: forward returns a {type(out).__name__}, not one tensor of logits; wrap the "
                f"model in a module that returns the logits"
            )
        if out.dim() != 2 or out.shape[0] != 2:
            raise ConfigError(f"{what}: forward returns shape {list(out.shape)} for a batch of 2, not [batch, classes]")
        if self.num_classes is not None and out.shape[1] != self.num_classes:
            raise ConfigError(
                f"{what}: gives {out.shape[1]} classes, not the {self.num_classes} asked for; give the factory "
                f"a num_classes argument (or --model-kwargs) or --num-classes {out.shape[1]}"
            )

    def classes(self, module: nn.Module) -> int:
        """The number of classes the module's output has."""
        return int(run_at(module, self.shape, self.spec).shape[1])


def resx_manifest(path: Path) -> dict | None:
    """The manifest of a file resx wrote (a TorchScript file, a weights export, an AOTInductor package), read
    without loading the model; None for a file without one."""
    import zipfile

    from resx.files import safe_torch_load

    try:
        if path.suffix == ".pt" and zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                name = next((n for n in z.namelist() if n.endswith("extra/resx_manifest.json")), None)
                return json.loads(z.read(name)) if name else None
        if path.suffix == ".pth":
            obj = safe_torch_load(path)
            return (
                json.loads(obj["manifest"]) if isinstance(obj, dict) and isinstance(obj.get("manifest"), str) else None
            )
        if path.suffix == ".pt2" and zipfile.is_zipfile(path):
            metadata = torch._C._aoti.AOTIModelPackageLoader.load_metadata_from_package(str(path), "model")
            return json.loads(metadata["resx_manifest.json"]) if "resx_manifest.json" in metadata else None
    except Exception:  # noqa: BLE001  (a file that is not one: it has no manifest; its loader says why later)
        return None
    return None


def run_at(module: nn.Module, shape: tuple[int, int, int], what: str):
    """Forward of a batch of 2 at `shape` in eval mode (BatchNorm needs no more than one image then);
    one line when the module rejects the shape."""
    was = module.training
    module.eval()
    try:
        with torch.no_grad():
            return module(torch.zeros(2, *shape))
    except Exception as e:  # noqa: BLE001  (the user's module: any error, one line)
        c, h, w = shape
        raise ConfigError(
            f"{what} rejects input {c}x{h}x{w} ({type(e).__name__}: {first_line(e)}); give the shape "
            f"it runs at with --input-shape C,H,W"
        ) from None
    finally:
        module.train(was)


def _accepts(fn, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # a builtin or C callable: no signature to read
        return False
    return any(p.name == name or p.kind == p.VAR_KEYWORD for p in params)


def _kwargs_text(kwargs: dict) -> str:
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in kwargs.items())


def _tv() -> str:
    import torchvision

    return torchvision.__version__.split("+")[0]


def parse_kwargs(text: str | None, option: str = "--model-kwargs") -> dict:
    """--model-kwargs '{"width_mult": 0.5}' -> dict; anything but a JSON object is one line."""

    return {} if text is None else json_object(text, option)


@dataclass(frozen=True)
class SourceOptions:
    """How every command that takes a model (resx.sources) shapes it, beyond its name."""

    model_kwargs: dict = option(
        {}, "torchvision or factory models: keyword arguments as a JSON object.", parse=json_object, show="none"
    )
    input_shape: tuple[int, int, int] | None = option(
        None,
        "C,H,W of one input.",
        parse=shape3,
        show="the model's own: 3,32,32 for the ResNets and factories, 3,224,224 for torchvision",
    )
    num_classes: int | None = option(None, "Classes of the head.", show="the model's own: 10 for the ResNets")
    stem: str = option(
        "cifar",
        "ResNets: cifar (3x3 conv), or imagenet (7x7/2 conv and max-pool): what a mismatched architecture measures.",
    )
    layers: tuple[int, ...] | None = option(
        None, "ResNets: blocks per stage, e.g. 3,3,3,3.", parse=stages, show="the depth's own"
    )
    width: int = option(64, "ResNets: channels of the first stage (resx.models.DEFAULT_WIDTH: the published ResNets').")
    seed: int = option(0, "Seed of the weights (and of the bench's inputs).")

    def source(self, spec: str, among: bool = False):
        """The model `spec` names, shaped by these options (resx.sources.Source). `among`: one of several
        models of kinds mixed, where --model-kwargs applies to the torchvision and factory ones alone."""
        files = (".pt", ".pt2", ".pth", ".pte")
        applies = spec.startswith("torchvision:") or (":" in spec and not spec.endswith(files))
        layers = list(self.layers) if self.layers else None
        kwargs = self.model_kwargs if applies or not among else None
        return Source.parse(
            spec, kwargs, self.num_classes, self.input_shape, stem=self.stem, layers=layers, width=self.width
        )
