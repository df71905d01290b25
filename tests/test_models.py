"""Models and export: one definition, the same outputs in eager Python, scripted Python and C++."""

import json

import pytest
import torch
from conftest import invoke

from resx import _cpp
from resx.errors import ResxError
from resx.export import MANIFEST_NAME, ExportError, export, inspect, load, quiet_jit, weights_hash
from resx.models import ARCHITECTURES, ModelConfig, build, parameter_count


@pytest.mark.parametrize(("name", "count"), [("resnet18", 11_173_962), ("resnet34", 21_282_122)])
def test_parameter_counts_of_the_cifar_definitions(name, count):
    assert parameter_count(build(ModelConfig(name))) == count


def test_imagenet_stem_with_three_blocks_is_the_well_known_cpp_resnet18():
    model = build(ModelConfig("resnet18", stem="imagenet", layers=[3, 3, 3, 3]))
    assert parameter_count(model) == 17_452_362


@pytest.mark.parametrize("stem", ["cifar", "imagenet"])
@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_eager_scripted_and_cpp_agree(tmp_path, name, stem):
    # The deeper ResNets at a quarter of the width: every block and stage the same, 16x fewer FLOPs.
    config = ModelConfig(name, stem=stem, width=64 if name == "resnet18" else 16)
    path = tmp_path / f"{name}-{stem}.pt"
    manifest = export(config, path, seed=3)
    eager = build(config, seed=3)
    scripted, _ = load(path)
    cpp = _cpp.Model(str(path))
    assert weights_hash(eager) == manifest["weights_hash"] == cpp.weights_hash()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for training in (False, True):  # eval first: train mode updates the BN running stats
        eager.train(training)
        scripted.train(training)
        cpp.train(training)
        with torch.no_grad():
            expected = eager(x)
            assert (scripted(x) - expected).abs().max().item() <= 1e-5
            assert (cpp.forward(x) - expected).abs().max().item() <= 1e-5
    assert cpp.training


def test_flops_match_the_published_figures(tmp_path):
    manifest = export(ModelConfig("resnet18"), tmp_path / "r18.pt")
    assert manifest["flops_per_image"]["forward"] == pytest.approx(1.11e9, rel=0.01)
    assert manifest["flops_per_image"]["training"] == pytest.approx(3.33e9, rel=0.01)
    assert manifest["parameters"] == 11_173_962


def test_fingerprint_ignores_weights_and_tells_architectures_apart(tmp_path):
    fp = lambda config, seed=0: export(config, tmp_path / "m.pt", seed=seed)["fingerprint"]
    narrow = {"width": 8}  # the architecture's every layer, quick to export
    base = fp(ModelConfig("resnet18", **narrow))
    assert fp(ModelConfig("resnet18", **narrow)) == base  # re-export
    assert fp(ModelConfig("resnet18", **narrow), seed=1) == base  # other weights
    others = [
        ModelConfig("resnet34", **narrow),
        ModelConfig("resnet18", stem="imagenet", **narrow),
        ModelConfig("resnet18", num_classes=100, **narrow),
        ModelConfig("resnet18", width=16),
    ]
    fps = {base} | {fp(c) for c in others}
    assert len(fps) == 5


def test_weights_hash_follows_the_seed(tmp_path):
    config = ModelConfig("resnet18", width=8)
    a = export(config, tmp_path / "a.pt", seed=0)["weights_hash"]
    b = export(config, tmp_path / "b.pt", seed=1)["weights_hash"]
    c = export(config, tmp_path / "c.pt", seed=0)["weights_hash"]
    assert a == c != b


def test_manifest_round_trip_and_cpp_reads_it(tmp_path):
    path = tmp_path / "r18.pt"
    manifest = export(ModelConfig("resnet18"), path, seed=5)
    _module, loaded = load(path)
    assert loaded == manifest
    assert json.loads(_cpp.Model(str(path)).manifest_json) == manifest
    assert manifest["normalization"]["mean"] == [0.4914, 0.4822, 0.4465]
    result = inspect(path)
    assert not result.failures and result.checks["fingerprint"]["c++"] == manifest["fingerprint"]


def test_weights_option_puts_trained_weights_in(tmp_path):
    src = tmp_path / "src.pt"
    manifest = export(ModelConfig("resnet18"), src, seed=7)
    again = export(ModelConfig("resnet18"), tmp_path / "again.pt", seed=0, weights=src)
    assert again["weights_hash"] == manifest["weights_hash"]
    with pytest.raises(ExportError, match="do not fit resnet34"):
        export(ModelConfig("resnet34"), tmp_path / "bad.pt", weights=src)


def test_cli_export_and_inspect(tmp_path):
    path = tmp_path / "r18.pt"
    assert invoke("export", "resnet18", "-o", str(path)).returncode == 0
    out = json.loads(invoke("inspect", str(path), "--json").stdout)
    assert out["failures"] == [] and not out["foreign"]
    assert out["checks"]["fingerprint"]["c++"] == out["manifest"]["fingerprint"]


def test_executable_inspect(tmp_path):
    from resx import cpp

    path = tmp_path / "r18.pt"
    manifest = export(ModelConfig("resnet18"), path)
    out = cpp.run_executable("inspect", str(path)).stdout
    assert f"fingerprint: {manifest['fingerprint']}\n" in out and "MISMATCH" not in out


def _error_line(result):
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.exit_code != 0 and len(lines) == 1, result.stderr
    return lines[0]


def in_process(*args: str):
    """The CLI in this process (typer's CliRunner): no process boundary is under test in these messages."""
    from typer.testing import CliRunner

    from resx.cli import app

    return CliRunner().invoke(app, list(args))


def test_inspect_bad_inputs(tmp_path):
    good = tmp_path / "good.pt"
    export(ModelConfig("resnet18"), good)

    assert "no such file" in _error_line(in_process("inspect", str(tmp_path / "missing.pt")))

    text = tmp_path / "text.pt"
    text.write_text("not a model")
    assert "not a TorchScript file" in _error_line(in_process("inspect", str(text)))

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert "TorchScript" in _error_line(in_process("inspect", str(truncated)))

    foreign = tmp_path / "foreign.pt"
    with quiet_jit():
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(foreign))
    result = in_process("inspect", str(foreign))  # derived from the file itself, and said so
    assert result.exit_code == 0 and "no resx manifest" in result.stdout and "agree" in result.stdout

    tampered = tmp_path / "tampered.pt"
    module, manifest = load(good)
    manifest["fingerprint"] = "0" * 40
    with quiet_jit():
        torch.jit.save(module, str(tampered), _extra_files={MANIFEST_NAME: json.dumps(manifest)})
    assert "fingerprint" in _error_line(in_process("inspect", str(tampered)))


def test_export_bad_inputs(tmp_path):
    out = str(tmp_path / "x.pt")
    assert "unknown model 'resnet19'" in _error_line(in_process("export", "resnet19", "-o", out))
    assert "num_classes" in _error_line(in_process("export", "resnet18", "--num-classes", "0", "-o", out))
    assert "unknown stem" in _error_line(in_process("export", "resnet18", "--stem", "tiny", "-o", out))
    assert "--seed must be in" in _error_line(in_process("export", "resnet18", "--seed", "-1", "-o", out))
    assert "--seed must be in" in _error_line(in_process("export", "resnet18", "--seed", str(2**64), "-o", out))
    assert not (tmp_path / "x.pt").exists()


def test_cpp_model_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ResxError, match="no such file"):
        _cpp.Model(str(tmp_path / "nope.pt"))
