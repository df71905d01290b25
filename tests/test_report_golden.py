"""The report from stored results, with no bench run: two real runs' results.json (tests/data/golden/:
ResNet18 at width 4 and 16, five runtimes, 1 thread, 3 rounds, instruction counts, measured here on
2026-12-03) render to the report.md stored beside each, byte for byte; `resx compare` reads the two.

When the report's format changes on purpose, write the golden files again and read the diff:
    for w in 4 16; do resx report tests/data/golden/w$w/results.json; done"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from resx.bench import analysis, report
from resx.bench.results import read_json
from resx.cli import app

GOLDEN = Path(__file__).resolve().parent / "data" / "golden"
RUNS = ["w4", "w16"]


@pytest.mark.parametrize("run", RUNS)
def test_a_stored_run_renders_its_golden_report(run, tmp_path):
    results = read_json(GOLDEN / run / "results.json")
    report.render(results, tmp_path)
    assert (tmp_path / "report.md").read_text() == (GOLDEN / run / "report.md").read_text()
    text = (tmp_path / "report.md").read_text()
    assert "Instructions per call" in text and "py-eager+again" in text  # the counts and the noise floor
    floor = text.split("### The run's noise floor")[1].split("###")[0]
    assert "exe-script / py-script" in floor  # a language's own ratio named as one, not as a repeated path
    assert (tmp_path / "resnet18-instructions.png").exists()


def test_the_stored_counts_say_what_python_costs():
    entry = read_json(GOLDEN / "w16" / "results.json").models["resnet18"]
    counts = entry.counts
    assert counts["py-eager"].instructions > counts["cpp-eager"].instructions > 0
    for path, c in counts.items():
        assert sum(layer.instructions for layer in c.layers) == pytest.approx(c.instructions, rel=0.01), path
    assert analysis.noise_path("py-eager") not in counts  # the noise path is timed, not counted


def test_compare_reads_two_stored_runs():
    a, b = (GOLDEN / r / "results.json" for r in RUNS)
    result = CliRunner().invoke(app, ["compare", str(a), str(b)])
    assert result.exit_code == 0, result.output
    assert "ratios changed beyond both intervals" in result.stdout and "resnet18" in result.stdout
    header, rows = report.compare(read_json(a), read_json(b), ("w4", "w16"))
    assert rows and all(len(r) == len(header) for r in rows)
