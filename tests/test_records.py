"""The run directory's records are fixed structs in both languages (resx.rundir's dataclasses, resnet_cpp/
rundir.h's structs): this test fails when they drift apart, in a field's name, order or kind."""

import typing
from dataclasses import fields

from resx import _cpp
from resx.rundir import METRICS, STEPS, EpochRecord, StepRecord

KINDS = {int: "int", float: "float", float | None: "float?"}


def python_schema(record: type) -> list[tuple[str, str]]:
    hints = typing.get_type_hints(record)
    return [(f.name, KINDS[hints[f.name]]) for f in fields(record)]


def test_step_and_epoch_records_are_the_same_in_both_languages():
    for record in (StepRecord, EpochRecord):
        assert [tuple(f) for f in _cpp.record_schema(record.__name__)] == python_schema(record), record.__name__


def test_every_column_names_a_field_of_its_record():
    for table in (STEPS, METRICS):
        names = [f.name for f in fields(table.record)]
        assert [c.field for c in table.columns] == names
        assert table.spec()["columns"][0] == {
            "header": table.columns[0].header,
            "field": names[0],
            "kind": table.columns[0].kind,
        }
