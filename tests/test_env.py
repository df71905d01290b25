"""Foundation: the extension, the executable and Python see the same LibTorch."""

import json

import torch
from conftest import invoke, run_resx

from resx import _cpp, cpp
from resx import env as envinfo


def test_extension_imports_and_reports_libtorch():
    report = _cpp.env()
    assert report["torch_version"] == torch.__version__.split("+")[0]
    assert report["build_config"] == torch.__config__.show()


def test_env_json_python_and_cpp_agree():
    out = json.loads(run_resx("env", "--json", check=True).stdout)
    runtimes = out["runtimes"]
    assert set(runtimes) == {"python", "cpp", "cpp-exe"}
    for key in ("torch_version", "intra_op_threads", "inter_op_threads", "build_config", "cuda_available"):
        values = {name: report[key] for name, report in runtimes.items()}
        assert len(set(values.values())) == 1, f"{key} differs: {values}"
    assert out["differing"] == []


def test_threads_set_through_binding_are_seen_by_both_sides(restore_threads):
    _cpp.set_num_threads(1)
    assert torch.get_num_threads() == 1
    assert _cpp.env()["intra_op_threads"] == "1"
    torch.set_num_threads(2)
    assert _cpp.env()["intra_op_threads"] == "2"


def test_executable_runs_and_agrees():
    exe = cpp.executable_env(threads=1)
    assert exe["intra_op_threads"] == "1"
    assert exe["torch_version"] == _cpp.env()["torch_version"]
    assert exe["build_config"] == torch.__config__.show()


def test_compare_flags_a_difference_but_not_the_load():
    reports = {"python": {"a": "1", "load_average": "0.1"}, "cpp": {"a": "2", "load_average": "0.3"}}
    assert envinfo.differing(reports) == ["a"]


def test_executable_rejects_unknown_argument():
    proc = cpp.subprocess.run([str(cpp.executable()), "env", "--bogus"], capture_output=True, text=True)
    assert proc.returncode == 2 and "--bogus" in proc.stderr


def test_help_and_version():
    assert invoke("--help").returncode == 0
    version = invoke("--version")
    assert version.returncode == 0 and version.stdout.startswith("resx ")
