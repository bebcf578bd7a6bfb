"""The policy format: validation, timm strings, legacy versions, presets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError
from torchvision.transforms.v2 import AutoAugment, AutoAugmentPolicy

from ops.catalogue import OPS, ops_markdown
from ops.policy import Policy, load_policy
from ops.presets import AUTOAUGMENT_PRESETS, PRESETS

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "policies"
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (
            {"kind": "subpolicies", "sub_policies": [[{"op": "Blur", "p": 0.5}]]},
            "sub_policies.0.0.op",
        ),
        (
            {"kind": "subpolicies", "sub_policies": [[{"op": "Rotate", "p": 1.5}]]},
            "sub_policies.0.0.p",
        ),
        (
            {"kind": "subpolicies", "sub_policies": [[{"op": "Rotate", "p": 1, "magnitude": 2}]]},
            "sub_policies.0.0.magnitude",
        ),
        ({"kind": "subpolicies", "sub_policies": [[]]}, "sub_policies"),
        ({"kind": "subpolicies"}, "sub_policies"),
        ({"kind": "randaugment", "m": 1.2}, "m"),
        ({"kind": "randaugment", "ops": ["Rotate", "Nope"]}, "ops"),
        ({"kind": "none", "colour": 1}, "colour"),
        ({"kind": "none", "base": {"crop_padding": -1}}, "base.crop_padding"),
        ({"kind": "none", "mix": {"label_smoothing": 1.0}}, "mix.label_smoothing"),
        ({"kind": "banana"}, "kind"),
    ],
)
def test_invalid_policies_name_the_field(data: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        load_policy(data)
    assert field in str(info.value)


def test_unknown_op_message_lists_known_ops() -> None:
    with pytest.raises(ValidationError, match=r"unknown op 'Blur'.*Rotate"):
        Policy(kind="subpolicies", sub_policies=[[{"op": "Blur", "p": 0.5}]])  # type: ignore[list-item]


@pytest.mark.parametrize(
    "text", ["rand-m9-n2-mstd0.5", "rand-m9-n2", "rand-m7-n3-p0.8", "rand-m10-n1-mstd1-p1"]
)
def test_timm_strings_round_trip(text: str) -> None:
    policy = Policy.from_timm(text)
    assert policy.kind == "randaugment"
    assert policy.to_timm() == text


def test_timm_levels_map_to_tenths() -> None:
    policy = Policy.from_timm("rand-m9-n2-mstd0.5")
    assert (policy.n, policy.m, policy.m_std, policy.p) == (2, 0.9, 0.05, 0.5)


@pytest.mark.parametrize("text", ["augmix-m5", "rand-m9-x2", "rand-m9-inc1", "rand-m9-mstd101"])
def test_bad_timm_strings_raise(text: str) -> None:
    with pytest.raises(ValueError, match="timm config"):
        Policy.from_timm(text)


def test_to_timm_refuses_other_kinds() -> None:
    with pytest.raises(ValueError, match="no timm config"):
        PRESETS["autoaugment-imagenet"].to_timm()
    with pytest.raises(ValueError, match="whole timm level"):
        Policy(kind="randaugment", m=0.95).to_timm()


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.json")), ids=lambda p: p.name)
def test_fixtures_of_every_version_load(path: Path) -> None:
    policy = load_policy(path.read_text())
    assert policy.schema_version == 1
    assert load_policy(policy.model_dump_json()) == policy


def test_legacy_bins_become_ninths() -> None:
    policy = load_policy((FIXTURES / "v0_autoaugment_list.json").read_text())
    first = policy.sub_policies[0]
    assert (first[0].op, first[0].p, first[0].magnitude) == ("Posterize", 0.4, 8 / 9)
    assert policy.sub_policies[1][1].magnitude == 0.0


def test_unknown_schema_version_is_refused() -> None:
    with pytest.raises(ValueError, match="schema_version 7"):
        load_policy({"schema_version": 7, "kind": "none"})
    with pytest.raises(ValueError, match="not valid JSON"):
        load_policy("{nope")


@pytest.mark.parametrize(("preset", "tv_name"), list(AUTOAUGMENT_PRESETS.items()))
def test_presets_equal_torchvision_tables(preset: str, tv_name: str) -> None:
    table = AutoAugment()._get_policies(AutoAugmentPolicy[tv_name])
    ours = PRESETS[preset].sub_policies
    assert len(ours) == len(table)
    for sub, tv_sub in zip(ours, table, strict=True):
        assert [(s.op, s.p) for s in sub] == [(name, p) for name, p, _ in tv_sub]
        for step, (_, _, level) in zip(sub, tv_sub, strict=True):
            assert step.magnitude == pytest.approx(0.0 if level is None else level / 9)


def test_every_preset_describes_itself() -> None:
    for policy in PRESETS.values():
        lines = policy.describe()
        assert lines and all(isinstance(line, str) for line in lines)
    lines = PRESETS["autoaugment-cifar10"].describe()
    assert len(lines) == 26 and "Invert (p=0.1), then Contrast (p=0.2" in lines[1]


def test_docs_table_is_generated_from_the_catalogue() -> None:
    docs = (ROOT / "docs" / "ops.md").read_text()
    assert ops_markdown() in docs
    assert all(f"| {name} |" in docs for name in OPS)


def test_policy_json_round_trip() -> None:
    policy = load_policy((FIXTURES / "v1_subpolicies.json").read_text())
    assert Policy.model_validate(json.loads(policy.model_dump_json())) == policy
