"""The ``text`` policy kind: validation, description, JSON round trip."""

from __future__ import annotations

from typing import get_args

import pytest
from pydantic import ValidationError

from ops.policy import Policy, TextOpName, load_policy
from ops.text import TEXT_OPS
from ops.text_presets import TEXT_PRESETS, eda_policy


def test_eda_defaults_round_trip() -> None:
    policy = eda_policy()
    assert policy.text is not None and policy.text.copies == 9
    assert [step.magnitude for step in policy.text.ops] == pytest.approx([0.2] * 4)
    assert load_policy(policy.model_dump_json()) == policy
    assert "alpha=0.1" in "\n".join(policy.describe())
    assert TEXT_PRESETS["eda"] == policy


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kind": "text"}, "kind 'text' needs it"),
        (
            {"kind": "none", "text": {"ops": [{"op": "RandomSwap", "magnitude": 0.1}]}},
            "no other kind",
        ),
        ({"kind": "text", "text": {"ops": []}}, "at least 1"),
        (
            {"kind": "text", "text": {"ops": [{"op": "Rotate", "magnitude": 0.1}]}},
            "SynonymReplacement",
        ),
        (
            {"kind": "text", "text": {"ops": [{"op": "RandomSwap", "magnitude": 0.1}] * 2}},
            "must not repeat",
        ),
        (
            {"kind": "text", "text": {"ops": [{"op": "RandomSwap", "magnitude": 1.5}]}},
            "less than or equal",
        ),
        (
            {
                "kind": "text",
                "text": {"ops": [{"op": "RandomSwap", "magnitude": 0.1}], "copies": 0},
            },
            "greater",
        ),
        (
            {
                "kind": "text",
                "text": {"ops": [{"op": "RandomSwap", "magnitude": 0.1}]},
                "base": {"hflip": True},
            },
            "no image augmentation",
        ),
    ],
)
def test_bad_text_policies_are_refused(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        load_policy({"schema_version": 1, **data})


def test_the_op_table_defines_every_op_of_the_format() -> None:
    assert tuple(TEXT_OPS) == get_args(TextOpName)


def test_image_kinds_keep_their_shape() -> None:
    assert Policy(kind="randaugment").text is None
    assert load_policy({"schema_version": 1, "kind": "none"}).describe() == ["No policy ops."]
