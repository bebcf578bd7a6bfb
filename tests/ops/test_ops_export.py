"""Exports: torchvision objects, albumentations pipelines, timm strings and snippets."""

from __future__ import annotations

import json
import subprocess
import sys

import albumentations as A
import numpy as np
import pytest
import torch
from torchvision.transforms import v2

from ops.apply import BatchAugmenter
from ops.catalogue import OPS, STANDARD_OPS
from ops.export import (
    Framework,
    to_albumentations,
    to_albumentations_dict,
    to_python_snippet,
    to_timm,
    to_torchvision,
)
from ops.policy import BaseAugment, OpStep, Policy
from ops.presets import PRESETS
from ops.tv_transform import RandomShift, TorchvisionPolicy


def _image(seed: int = 0) -> torch.Tensor:
    return torch.randint(
        0, 256, (3, 32, 32), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8
    )


@pytest.mark.parametrize(
    ("preset", "cls"),
    [
        ("randaugment-2-9", v2.RandAugment),
        ("trivialaugment-wide", v2.TrivialAugmentWide),
        ("autoaugment-imagenet", v2.AutoAugment),
        ("autoaugment-cifar10", v2.AutoAugment),
        ("autoaugment-svhn", v2.AutoAugment),
    ],
)
def test_presets_export_to_torchvision_classes(preset: str, cls: type) -> None:
    policy = PRESETS[preset].model_copy(update={"base": BaseAugment(crop_padding=4, hflip=True)})
    transforms = to_torchvision(policy).transforms
    assert isinstance(transforms[0], RandomShift) and isinstance(
        transforms[1], v2.RandomHorizontalFlip
    )
    assert type(transforms[2]) is cls
    assert transforms[2](_image()).shape == (3, 32, 32)  # type: ignore[operator]


def test_randaugment_export_uses_the_same_magnitudes() -> None:
    exported = to_torchvision(PRESETS["randaugment-2-9"]).transforms[0]
    assert (exported.num_ops, exported.magnitude, exported.num_magnitude_bins) == (2, 9, 11)
    assert tuple(exported._AUGMENTATION_SPACE) == STANDARD_OPS
    for name, (space, signed) in exported._AUGMENTATION_SPACE.items():
        table = space(11, 32, 32)
        if table is not None:
            ours = OPS[name].magnitude_to_arg(0.9, size=32)
            theirs = float(table[9])
            assert ours == pytest.approx(int(theirs) if "Translate" in name else theirs, abs=1e-5)
        assert signed == OPS[name].signed


@pytest.mark.parametrize("cls", [v2.TrivialAugmentWide, v2.AutoAugment])
def test_torchvision_spaces_equal_the_catalogue(cls: type) -> None:
    bins, wide = (31, True) if cls is v2.TrivialAugmentWide else (10, False)
    for name, (space, _) in cls._AUGMENTATION_SPACE.items():  # type: ignore[attr-defined]
        table = space(bins, 40, 40)
        for b in range(bins) if table is not None else ():
            ours = float(OPS[name].bin_to_arg(torch.tensor([b]), bins, wide=wide, size=40)[0])
            assert ours == pytest.approx(
                OPS[name].magnitude_to_arg(b / (bins - 1), wide, 40), abs=1
            )
            theirs = float(table[b])
            theirs = float(int(theirs)) if "Translate" in name else theirs
            assert ours == pytest.approx(theirs, abs=1e-5), (name, b)


def test_custom_policy_exports_to_an_equivalent_torchvision_transform() -> None:
    steps = [OpStep(op=name, p=0.8, magnitude=0.6) for name in OPS]
    policy = Policy(
        kind="subpolicies", sub_policies=[steps[i : i + 2] for i in range(0, len(steps), 2)]
    )
    transform = to_torchvision(policy).transforms[0]
    assert isinstance(transform, TorchvisionPolicy)
    augmenter = BatchAugmenter(policy)
    differing = 0.0
    for seed in range(40):
        image = _image(seed)
        transform.generator = torch.Generator().manual_seed(seed)
        ours = augmenter(image[None], torch.Generator().manual_seed(seed))[0]
        theirs = transform(image)
        diff = (ours.int() - theirs.int()).abs()
        differing += (diff > 1).float().mean().item() / 40
    assert differing < 0.01


def test_timm_export() -> None:
    assert to_timm(PRESETS["randaugment-2-9"]) == "rand-m9-n2-p1"
    assert (
        to_timm(Policy(kind="randaugment", n=3, m=0.5, m_std=0.05, p=0.5)) == "rand-m5-n3-mstd0.5"
    )
    with pytest.raises(ValueError, match="op set"):
        to_timm(Policy(kind="randaugment", ops=["Rotate"]))


def test_albumentations_export_structure_and_round_trip() -> None:
    policy = PRESETS["autoaugment-cifar10"].model_copy(
        update={"base": BaseAugment(crop_padding=4, hflip=True)}
    )
    compose = to_albumentations(policy)
    assert isinstance(compose.transforms[0], A.Affine) and isinstance(
        compose.transforms[1], A.HorizontalFlip
    )
    choice = compose.transforms[2]
    assert isinstance(choice, A.OneOf) and len(choice.transforms) == 25
    assert all(isinstance(sub, A.Sequential) for sub in choice.transforms)
    data = to_albumentations_dict(policy)
    assert A.to_dict(A.from_dict(json.loads(json.dumps(data)))) == data
    rand = to_albumentations(PRESETS["randaugment-2-9"]).transforms[0]
    assert isinstance(rand, A.SomeOf) and rand.n == 2 and len(rand.transforms) == 14


def test_albumentations_single_ops_do_what_they_say() -> None:
    image = _image().permute(1, 2, 0).numpy()

    def run(step: OpStep) -> np.ndarray:
        compose = to_albumentations(Policy(kind="subpolicies", sub_policies=[[step]]))
        out: np.ndarray = compose(image=image)["image"]
        return out

    assert np.array_equal(run(OpStep(op="Invert", p=1.0)), 255 - image)
    assert np.array_equal(run(OpStep(op="Invert", p=0.0)), image)
    assert np.array_equal(run(OpStep(op="FlipLR", p=1.0)), image[:, ::-1])
    posterized = run(OpStep(op="Posterize", p=1.0, magnitude=1.0))
    assert np.array_equal(posterized, image & 0xF0)
    moved = run(OpStep(op="TranslateX", p=1.0, magnitude=1.0))
    assert (moved == 0).mean() > 0.4  # 14 of 32 columns shifted out, zero filled


def test_albumentations_refuses_what_it_cannot_express() -> None:
    with pytest.raises(ValueError, match="SolarizeAdd"):
        to_albumentations(
            Policy(
                kind="subpolicies", sub_policies=[[OpStep(op="SolarizeAdd", p=1.0, magnitude=0.5)]]
            )
        )
    with pytest.raises(ValueError, match="m_std"):
        to_albumentations(Policy(kind="randaugment", m_std=0.1))


def test_albumentations_json_loads_without_augsearch() -> None:
    data = json.dumps(to_albumentations_dict(PRESETS["trivialaugment-wide"]))
    code = (
        "import json, sys, numpy as np, albumentations as A\n"
        "t = A.from_dict(json.loads(sys.stdin.read()))\n"
        "out = t(image=np.zeros((32, 32, 3), np.uint8))['image']\n"
        "assert out.shape == (32, 32, 3)\n"
        "assert not any(m == 'ops' or m.startswith('ops.') for m in sys.modules), 'ops imported'\n"
        "print('loaded')\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", code],
        input=data,
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "loaded"


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("framework", ["torchvision", "albumentations"])
def test_snippets_run(preset: str, framework: Framework) -> None:
    policy = PRESETS[preset]
    namespace: dict[str, object] = {}
    exec(to_python_snippet(policy, framework), namespace)
    transform = namespace["transform"]
    if framework == "torchvision":
        assert transform(_image()).shape == (3, 32, 32)  # type: ignore[operator]
    else:
        assert transform(image=np.zeros((32, 32, 3), np.uint8))["image"].shape == (32, 32, 3)  # type: ignore[operator]


def test_torchvision_snippet_is_pure_torchvision_for_presets() -> None:
    snippet = to_python_snippet(PRESETS["randaugment-2-9"], "torchvision")
    assert "ops" not in snippet.replace("num_ops", "")
    assert "v2.RandAugment(num_ops=2, magnitude=9, num_magnitude_bins=11)" in snippet


def test_timm_snippet() -> None:
    policy = Policy.from_timm("rand-m9-n2-mstd0.5")
    snippet = to_python_snippet(policy, "timm")
    compile(snippet, "<snippet>", "exec")
    # timm's own ops at our ranges, not timm's RandAugment op list behind the config string.
    assert 'op("Rotate", 0.4642857142857143, 9.0, magnitude_std=0.5)' in snippet
    assert "], num_layers=2)" in snippet and "Identity" in snippet  # folded, and says so
    with pytest.raises(ValueError, match="framework"):
        to_python_snippet(PRESETS["none"], "keras")  # type: ignore[arg-type]
    pytest.importorskip("timm")
    namespace: dict[str, object] = {}
    exec(snippet, namespace)
    assert callable(namespace["transform"])
