"""The registry of protocol-error kinds (dicom/problems.py): the label values of
dicom_protocol_errors_total{kind} are a contract, and every place that makes a
ProtocolError takes its kind from the registry."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from dicomsniffd.dicom import problems

PACKAGE = Path(__file__).resolve().parent.parent / "dicomsniffd"


def test_registered_kinds_are_the_metric_label_values():
    assert [k.name for k in problems.PROTOCOL_ERRORS] == [
        "bad-pdu-type",
        "bad-pdu-length",
        "bad-pdv-length",
        "command-too-large",
        "bad-pdu",
        "bad-command-set",
        "duplicate-message-id",
        "too-many-pending",
        "parser-exception",
        "one-direction-only",
        "resync",
    ]
    for kind in problems.PROTOCOL_ERRORS:
        assert kind.severity in (problems.ERROR, problems.WARNING, problems.NOTE)
        assert kind.meaning and kind is problems.PROTOCOL_ERRORS[kind.name]
    assert problems.PROTOCOL_ERRORS.metric == "dicom_protocol_errors_total"


def test_a_kind_is_registered_once_with_a_known_severity():
    registry = problems.ProblemRegistry("dicom_protocol_violations_total")
    name = registry.register(
        "even-presentation-context-id",
        problems.WARNING,
        "a presentation context ID that is even",
        reference="PS3.8 9.3.2.2",
        advice="presentation context IDs shall be odd",
    )
    assert name in registry and len(registry) == 1
    assert registry[name].reference == "PS3.8 9.3.2.2"
    with pytest.raises(ValueError):
        registry.register(name, problems.WARNING, "again")
    with pytest.raises(ValueError):
        registry.register("other", "fatal", "no such severity")


def _literal_kinds(tree: ast.AST) -> list[int]:
    """Lines where a ProtocolError or a framer (ERROR, kind, ...) item spells its kind."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "ProtocolError":
            kind = node.args[2] if len(node.args) > 2 else None
            kind = next((k.value for k in node.keywords if k.arg == "kind"), kind)
            if isinstance(kind, ast.Constant):
                lines.append(node.lineno)
        elif isinstance(node, ast.Tuple) and len(node.elts) > 1:
            first, second = node.elts[0], node.elts[1]
            if getattr(first, "id", "") == "ERROR" and isinstance(second, ast.Constant):
                lines.append(node.lineno)
    return lines


def test_every_protocol_error_takes_its_kind_from_the_registry():
    spelled = {}
    for path in PACKAGE.rglob("*.py"):
        lines = _literal_kinds(ast.parse(path.read_text(), str(path)))
        if lines:
            spelled[str(path.relative_to(PACKAGE))] = lines
    assert spelled == {}
