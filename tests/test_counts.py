"""Instruction counts under callgrind (resx.bench.counts): a path's count is the same twice, Python's eager
call costs more instructions than C++'s on the same module, the split by layer accounts for the whole
count, the map's fit on counts recovers known costs, and --counts without valgrind is one line.

valgrind is on these machines and in CI; the collections skip where it is not. A tiny ResNet at 3x16x16:
a collection takes 40-70 s here, most of it starting torch under valgrind."""

from __future__ import annotations

import shutil

import pytest
from conftest import bench_plan

from resx.bench import counts as K
from resx.bench import language
from resx.bench.results import Counts, Layer, ModelResults
from resx.errors import BenchError

needs_valgrind = pytest.mark.skipif(
    not (shutil.which("valgrind") and shutil.which("callgrind_annotate")), reason="valgrind is not installed"
)
TINY = {"models": ("resnet18",), "layers": (1, 1, 1, 1), "width": 4, "input_shape": (3, 16, 16)}


def counted(tmp_path, runtimes: list[str]) -> dict[str, Counts]:
    from resx.bench.prepare import prepare

    plan = bench_plan(model=TINY, paths={"runtimes": runtimes}, counts={"enabled": True, "calls": 3})
    model = plan.models[0]
    prepared = prepare(model, tmp_path, lambda _: None)
    warnings: list[str] = []
    got = K.count_paths(model, prepared, lambda _: None, warnings.append)
    assert not warnings, warnings  # every path of this build can be counted
    return got


@pytest.fixture(scope="module")
def three(tmp_path_factory) -> dict[str, Counts]:
    return counted(tmp_path_factory.mktemp("counts"), ["py-eager", "cpp-eager", "exe-eager"])


@needs_valgrind
def test_python_eager_costs_more_instructions_than_cpp_eager_on_the_same_module(three):
    assert set(three) >= {"py-eager", "cpp-eager", "exe-eager"}
    py, cpp, exe = three["py-eager"].instructions, three["cpp-eager"].instructions, three["exe-eager"].instructions
    assert py > cpp > 0 and exe > 0
    # The interpreter runs in the Python path's call and not in the executable's.
    layer = {c: {lay.name: lay.instructions for lay in three[c].layers} for c in three}
    assert layer["py-eager"][K.LAYERS[0]] > 0.05 * py
    assert layer["exe-eager"][K.LAYERS[0]] == 0
    assert layer["py-eager"][K.LAYERS[4]] > 0  # the kernels ran, and were found


@needs_valgrind
def test_the_split_accounts_for_the_whole_count(three):
    for path, c in three.items():
        parts = sum(lay.instructions for lay in c.layers)
        assert parts == pytest.approx(c.instructions, rel=0.01), path
        assert [lay.name for lay in c.layers] == list(K.LAYERS)
        assert c.calls == 3 and c.valgrind.startswith("valgrind") and c.by_function
        assert c.kernels == "avx" and c.hash_seed == "0"  # the defaults, recorded with the count


@needs_valgrind
def test_two_collections_of_the_same_path_agree_within_one_percent(three, tmp_path):
    again = counted(tmp_path, ["exe-eager"])["exe-eager"].instructions
    assert again == pytest.approx(three["exe-eager"].instructions, rel=0.01)


@needs_valgrind
def test_the_training_step_is_counted_without_its_preparation(tmp_path):
    """cpp-exe's run prepared in this process, then resx-cpp itself under callgrind, steps 3-4 counted by
    resx::Trainer: the count is the C++ trainer's alone (no interpreter in it) and its split sums to it.
    Python's trainer switches callgrind on with the calls' own requests (resx.callgrind, counted above);
    test_train proves that a run prepared alone and trained this way trains bit for bit like any other."""
    runtimes = {"runtimes": ["exe-eager"]}
    plan = bench_plan(
        model=TINY | {"input_shape": (3, 32, 32)},
        paths=runtimes,
        training=runtimes | {"batch": 4},
        counts={"enabled": True, "steps": 2},
    )
    warnings: list[str] = []
    got = K.count_training(plan.models[0], tmp_path, lambda _: None, warnings.append)
    assert not warnings and set(got) == {"exe-eager"}, warnings
    c = got["exe-eager"]
    assert c.instructions > 0 and c.calls == 2 and c.layers[0].instructions == 0  # no interpreter
    assert sum(lay.instructions for lay in c.layers) == pytest.approx(c.instructions, rel=0.01)
    assert c.layers[4].instructions > 0  # the kernels ran, and were found


def test_the_counted_steps_are_read_from_the_environment(monkeypatch):
    from resx import callgrind

    monkeypatch.delenv(callgrind.COUNT_STEPS, raising=False)
    assert callgrind.counted_steps() is None
    monkeypatch.setenv(callgrind.COUNT_STEPS, "2,3")
    assert callgrind.counted_steps() == (2, 3)
    for bad in ("2", "x,1", "2,0", "-1,2"):
        monkeypatch.setenv(callgrind.COUNT_STEPS, bad)
        with pytest.raises(ValueError, match=r"RESX_COUNT_STEPS"):
            callgrind.counted_steps()


def test_layers_of_callgrind_entries():
    assert K.layer("/usr/lib/libpython3.12.so.1.0", "_PyEval_EvalFrameDefault") == K.LAYERS[0]
    assert K.layer("/x/torch/lib/libtorch_python.so", "THPVariable_conv2d") == K.LAYERS[1]
    assert K.layer("/x/resx/_cpp.cpython-312-x86_64-linux-gnu.so", "resx::Engine::forward") == K.LAYERS[2]
    assert K.layer("/x/torch/lib/libtorch_cpu.so", "c10::Dispatcher::call") == K.LAYERS[3]
    assert K.layer("/x/torch/lib/libtorch_cpu.so", "at::native::unfolded2d_copy") == K.LAYERS[4]
    assert K.layer("???", "0x0000000004a1b2c0") == K.LAYERS[4]  # oneDNN's generated code has no object
    assert K.layer("/lib/x86_64-linux-gnu/libc.so.6", "malloc") == K.LAYERS[5]
    assert K.layer("/lib/x86_64-linux-gnu/libc.so.6", "memcpy") == K.LAYERS[6]
    # ExecuTorch: its runtime is the framework; XNNPACK's micro-kernels (their names stripped) the kernels
    xnn = "/x/executorch/lib/libexecutorch_backend_xnnpack.so"
    assert K.layer(xnn, "0x00000000000ffcc0") == K.LAYERS[4]
    assert K.layer(xnn, "xnn_reshape_runtime") == K.LAYERS[3]
    assert K.layer("/x/executorch/lib/libexecutorch.so", "executorch::runtime::Method::execute") == K.LAYERS[3]
    assert K.layer("/x/resx/resx-executorch", "resx::et::Program::forward") == K.LAYERS[2]


def test_split_of_entries_sums_per_call():
    entries = [
        (600.0, "libpython3.12.so", "f", ""),
        (300.0, "libtorch_cpu.so", "sgemm", ""),
        (100.0, "libc.so.6", "g", ""),
    ]
    c = K.split(1000.0, entries, 2, 1.0, "valgrind-3.19.0", "avx")
    assert c.instructions == 500 and sum(lay.instructions for lay in c.layers) == 500
    assert c.by_object == {"libpython3.12.so": 300, "libtorch_cpu.so": 150, "libc.so.6": 50}


def test_the_fit_on_counts_recovers_known_fixed_and_per_operator_costs():
    fixed, per_op, base = 2.0e6, 5_000.0, 9.0e6
    ops = {f"g{i}": float(n) for i, n in enumerate((20, 40, 80, 160))}

    def entry(name, n):
        e = ModelResults(name, {})
        e.counts = {"exe": Counts(1, base + 1e4 * n), "py": Counts(1, base + 1e4 * n + fixed + per_op * n)}
        return e

    entries = {g: entry(g, n) for g, n in ops.items()}
    costs = language.fit_counts(entries, ops, "exe")
    assert costs["py"].fixed.value == pytest.approx(fixed) and costs["py"].per_op.value == pytest.approx(per_op)
    held = entry("h", 120)
    (p,) = language.predict_counts([("h", held)], {"h": 120.0}, costs)
    assert p.predicted == pytest.approx(p.measured)
    # Fitted against the same module from C++ where it was counted: the language's cost alone.
    assert language.count_reference(entries, "exe") == "exe"
    for e in entries.values():
        e.counts["cpp-eager"] = Counts(1, e.counts["py"].instructions - fixed - per_op * ops[e.name])
    assert language.count_reference(entries, "exe") == "cpp-eager"
    again = language.fit_counts(entries, ops, "cpp-eager")["py"]
    assert again.reference == "cpp-eager" and again.fixed.value == pytest.approx(fixed)
    assert again.per_op.value == pytest.approx(per_op)


def test_counts_without_valgrind_is_one_line(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from resx.cli import app

    monkeypatch.setenv("PATH", str(tmp_path))  # no valgrind on it
    result = CliRunner().invoke(app, ["bench", "--counts", "--dry-run", "-o", str(tmp_path / "r")])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if "error" in line]
    assert len(lines) == 1 and "apt-get install valgrind" in lines[0], result.output
    with pytest.raises(BenchError, match="apt-get install valgrind"):
        K.valgrind()


def test_layer_records_round_trip():
    from resx.codec import decode, encode

    c = Counts(3, 10.0, [Layer(K.LAYERS[0], 10.0)], {"a": 1.0}, {"f [a]": 1.0}, "valgrind-3.19.0", 2.0)
    assert decode(Counts, encode(c)) == c
