"""Exported code runs without augsearch and matches our applier in distribution.

Every snippet runs in one subprocess where ``ops``, ``search`` and ``service`` cannot be imported
(an import hook refuses them, the working directory is elsewhere, ``python -I``). On fixed 1- and
3-channel images, tensors and PIL, each output must be one that our applier can produce: every
outcome of the policy (op, sign, magnitude bin, probability draw, Cutout position, base shift) is
enumerated and applied with :meth:`BatchAugmenter.apply_params`, at its exact probability. The
frequencies of the outcomes, and of the ops behind them, must lie within 4.5 binomial standard
errors of those probabilities. How close an output must be to its outcome is ``TOLERANCE``.
Documented timm differences are modelled: PIL rounds fractional shifts (we truncate) and timm
keeps enhance factors at or above 0.1.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ops.apply import AugmentParams, BatchAugmenter
from ops.catalogue import OPS
from ops.export import to_python_snippet
from ops.groups import SlotParams
from ops.policy import BaseAugment, OpStep, Policy
from ops.presets import PRESETS

DRAWS = 400
SIZE = 16
#: (levels, share): an output matches an outcome when at most ``share`` of its values are more
#: than ``levels`` apart. On PIL images torchvision and timm use PIL's kernels: PIL rounds
#: contrast and saturation its own way (a following brightness factor, posterize bit or
#: equalisation step can widen that), and breaks nearest-neighbour ties upwards where torch
#: rounds half to even (a shear of 0.2 has ties in every fifth row).
#: On tensors, torchvision's saturation and sharpness kernels round up to 1% of values one level
#: away from ours, and a following Equalize or AutoContrast spreads that over many values.
#: "exact" is for ops whose neighbouring magnitudes are only one level apart (SolarizeAdd).
TOLERANCE = {"exact": (0, 0.02), "tensor": (1, 0.02), "pil": (4, 0.12)}
Z = 4.5
HAS_TIMM = importlib.util.find_spec("timm") is not None

RUNNER = r"""
import importlib.abc, json, random, sys

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {"ops", "search", "service"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Refuse())
try:
    import ops
    raise SystemExit("ops is importable")
except ModuleNotFoundError:
    pass

import numpy as np, torch
from torchvision.transforms.v2 import functional as F

cases = json.load(open(sys.argv[1]))
images = dict(np.load(sys.argv[2]))
out = {}
for case in cases:
    namespace = {}
    exec(case["code"], namespace)
    transform = namespace["transform"]
    for key, image in images.items():
        tensor = torch.from_numpy(image)
        for mode in case["modes"]:
            torch.manual_seed(0), random.seed(0), np.random.seed(0)
            rows = []
            for _ in range(case["draws"]):
                if mode == "pil":
                    pil = F.to_pil_image(tensor, mode="L" if tensor.shape[0] == 1 else "RGB")
                    rows.append(F.pil_to_tensor(transform(pil)).numpy())
                else:
                    rows.append(transform(tensor).numpy())
            out["|".join((case["id"], key, mode))] = np.stack(rows)
assert not {m.partition(".")[0] for m in sys.modules} & {"ops", "search", "service"}
np.savez(sys.argv[3], **out)
"""


@dataclass(frozen=True)
class Case:
    """One exported snippet to run: its framework, policy and input kinds."""

    id: str
    framework: str
    policy: Policy
    modes: tuple[str, ...] = ("tensor",)
    tolerance: str | None = None  # a key of TOLERANCE; by default "tensor" or "pil"

    @property
    def timm(self) -> bool:
        return self.framework == "timm"


def _every_op(wide: bool, magnitude: float, skip: tuple[str, ...] = ()) -> Policy:
    subs = [[OpStep(op=name, p=0.8, magnitude=magnitude)] for name in OPS if name not in skip]
    subs.append([OpStep(op="Rotate", p=0.5, magnitude=1 / 3), OpStep(op="Solarize", p=1.0)])
    return Policy(kind="subpolicies", sub_policies=subs, wide=wide)


NO_TIMM = ("Cutout", "FlipLR", "FlipUD")
NOISY = Policy(kind="randaugment", n=1, m=0.5, m_std=0.3, wide=True,
               ops=["Identity", "Posterize", "SolarizeAdd", "TranslateX"])  # fmt: skip
CUSTOM_TRIVIAL = Policy(kind="trivialaugment", p=0.8,
                        ops=["Identity", "ShearX", "TranslateY", "Rotate", "Color", "Posterize",
                             "Solarize", "SolarizeAdd", "Invert"])  # fmt: skip
BASE = Policy(kind="none", base=BaseAugment(crop_padding=2, hflip=True, vflip=True))
BOTH = ("tensor", "pil")
CASES = [
    Case("every-op", "torchvision", _every_op(False, 0.6), BOTH),
    Case("every-op-wide", "torchvision", _every_op(True, 0.9), BOTH),
    *(Case(name, "torchvision", policy) for name, policy in PRESETS.items()),
    Case("randaugment-custom", "torchvision", Policy(kind="randaugment", n=2, m=0.5, p=0.7)),
    Case("randaugment-noise", "torchvision", NOISY, BOTH, tolerance="exact"),
    Case("trivialaugment-custom", "torchvision", CUSTOM_TRIVIAL),
    Case("base", "torchvision", BASE, BOTH),
    Case("every-op", "timm", _every_op(False, 0.6, NO_TIMM), ("pil",)),
    Case("every-op-wide", "timm", _every_op(True, 0.9, NO_TIMM), ("pil",)),
    *(Case(name, "timm", policy, ("pil",)) for name, policy in PRESETS.items()),
    Case(
        "randaugment-noise",
        "timm",
        NOISY.model_copy(update={"ops": ["Identity", "SolarizeAdd"]}),
        ("pil",),
        tolerance="exact",
    ),
    Case("trivialaugment-custom", "timm", CUSTOM_TRIVIAL, ("pil",)),
    Case("base", "timm", BASE, ("pil",)),
]
IMAGES = {
    f"c{c}": torch.randint(30, 190, (c, SIZE, SIZE), generator=torch.Generator().manual_seed(c),
                           dtype=torch.uint8)
    for c in (1, 3)
}  # fmt: skip


def run_exports(tmp: Path) -> dict[str, np.ndarray]:
    """Every case's outputs, from one subprocess that cannot import augsearch."""
    cases = [
        {"id": f"{c.framework}:{c.id}", "code": to_python_snippet(c.policy, c.framework),  # type: ignore[arg-type]
         "modes": list(c.modes), "draws": DRAWS}
        for c in CASES if HAS_TIMM or not c.timm
    ]  # fmt: skip
    (tmp / "cases.json").write_text(json.dumps(cases))
    arrays: dict[str, Any] = {key: image.numpy() for key, image in IMAGES.items()}
    np.savez(tmp / "images.npz", **arrays)
    (tmp / "runner.py").write_text(RUNNER)
    done = subprocess.run(
        [sys.executable, "-I", str(tmp / "runner.py"), "cases.json", "images.npz", "out.npz"],
        cwd=tmp, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(np.load(tmp / "out.npz"))


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    return run_exports(tmp_path_factory.mktemp("pure"))


# --- every outcome of our applier -----------------------------------------------------------

# One way a slot can go: (probability, op index, applied, argument, Cutout centre, label).
Alt = tuple[float, int, bool, float, tuple[float, float], str]


def _args(policy: Policy, name: str, magnitudes: list[float], timm: bool) -> list[float]:
    """The op's arguments as the applier computes them (TrivialAugment: torchvision's tables).

    ``timm`` models timm's documented difference: PIL rounds a fractional shift where we
    truncate.
    """
    op, wide = OPS[name], policy.wide
    low, high, relative = op.range(wide)
    if policy.kind == "trivialaugment":
        args = op.bin_to_arg(torch.arange(31), 31, wide, SIZE)
        raw = torch.linspace(low * SIZE, high * SIZE, 31)
    else:
        values = torch.tensor(magnitudes, dtype=torch.float32)
        args = op.magnitude_to_arg(values, wide, SIZE)
        raw = (low + values * (high - low)) * SIZE
    if timm and relative:
        return raw.round().tolist()
    return args.tolist()


def _signs(name: str, arg: float, timm: bool) -> tuple[float, ...]:
    if not OPS[name].signed or arg == 0:
        return (arg,)
    if timm and name in ("Brightness", "Color", "Contrast", "Sharpness"):
        return arg, -min(arg, 0.9)  # timm keeps enhance factors at or above 0.1
    return arg, -arg


def _magnitudes(policy: Policy) -> list[tuple[float, float]]:
    """(magnitude, weight) pairs of a randaugment / trivialaugment op."""
    if policy.kind == "trivialaugment":
        return [(b / 30, 1 / 31) for b in range(31)]
    if not policy.m_std:
        return [(policy.m, 1.0)]
    q = 5_000  # quantiles of the clipped normal; arguments are integral, so counts are exact
    z = torch.special.ndtri((torch.arange(q, dtype=torch.float64) + 0.5) / q)
    return [(float(v), 1 / q) for v in (policy.m + policy.m_std * z).clamp(0, 1).float()]


def _alts(
    policy: Policy, name: str, p: float, mags: list[tuple[float, float]], timm: bool
) -> list[Alt]:
    """The ways one op applied with probability ``p`` can go: not at all, or at each of its
    arguments with each sign (and, for Cutout, at each position)."""
    op, index = OPS[name], policy.op_set.index(name)
    out: list[Alt] = [(1 - p, index, False, 0.0, (0.0, 0.0), "")] if p < 1 else []
    args: dict[float, float] = {}
    values = _args(policy, name, [m for m, _ in mags], timm)
    for arg, (_, weight) in zip(values, mags, strict=True):
        args[arg] = args.get(arg, 0.0) + weight
    grid = [((i + 0.5) / SIZE, (j + 0.5) / SIZE) for i in range(SIZE) for j in range(SIZE)]
    centres = grid if op.needs_centre else [(0.0, 0.0)]
    for arg, weight in args.items():
        signs = _signs(name, arg, timm)
        for value, centre in itertools.product(signs, centres):
            share = p * weight / len(signs) / len(centres)
            out.append((share, index, True, value, centre, name))
    return out


def _slot_lists(policy: Policy, timm: bool) -> list[tuple[float, list[list[Alt]]]]:
    """(probability, alternatives per slot) of each way the policy's slots are set up."""
    if policy.kind == "subpolicies":
        depth = max(len(sub) for sub in policy.sub_policies)
        idle: Alt = (1.0, 0, False, 0.0, (0.0, 0.0), "")
        return [
            (1 / len(policy.sub_policies),
             [_alts(policy, s.op, s.p, [(s.magnitude, 1.0)], timm) for s in sub]
             + [[idle]] * (depth - len(sub)))
            for sub in policy.sub_policies
        ]  # fmt: skip
    if policy.kind == "none":
        return [(1.0, [])]
    slot: list[Alt] = [
        (share / len(policy.op_set), index, applied, arg, centre, label)
        for name in policy.op_set
        for share, index, applied, arg, centre, label in _alts(
            policy, name, policy.p, _magnitudes(policy), timm
        )
    ]
    return [(1.0, [slot] * (policy.n if policy.kind == "randaugment" else 1))]


def outcomes(
    policy: Policy, image: torch.Tensor, timm: bool
) -> tuple[torch.Tensor, list[float], list[str]]:
    """Every output our applier can give for ``image``, its probability and its ops."""
    pad, base = policy.base.crop_padding, policy.base
    shifts = list(itertools.product(range(-pad, pad + 1), repeat=2))
    flips = list(itertools.product((False, True) if base.hflip else (False,),
                                   (False, True) if base.vflip else (False,)))  # fmt: skip
    rows: list[tuple[float, tuple[int, ...], tuple[bool, bool], tuple[Alt, ...]]] = []
    for share, slots in _slot_lists(policy, timm):
        for shift, flip, combo in itertools.product(shifts, flips, itertools.product(*slots)):
            prob = share / len(shifts) / len(flips) * math.prod(a[0] for a in combo)
            if prob > 0:
                rows.append((prob, shift, flip, combo))
    n = len(rows)
    slot_params = tuple(
        SlotParams(
            op_index=torch.tensor([r[3][j][1] for r in rows]),
            apply=torch.tensor([r[3][j][2] for r in rows]),
            arg=torch.tensor([r[3][j][3] for r in rows], dtype=torch.float32),
            centre=torch.tensor([r[3][j][4] for r in rows], dtype=torch.float32),
        )
        for j in range(len(rows[0][3]))
    )
    params = AugmentParams(policy.op_set, torch.tensor([r[1] for r in rows]).view(n, 2),
                           torch.tensor([r[2] for r in rows]).view(n, 2), slot_params)  # fmt: skip
    images = BatchAugmenter(policy).apply_params(image.expand(n, -1, -1, -1).contiguous(), params)
    labels = ["+".join(a[5] for a in r[3] if a[5] and a[5] != "Identity") for r in rows]
    return images, [r[0] for r in rows], labels


# --- comparing ------------------------------------------------------------------------------


def _far(a: torch.Tensor, b: torch.Tensor, levels: int) -> torch.Tensor:
    """(len(a), len(b)) share of values more than ``levels`` apart."""
    a16, b16 = a.flatten(1).to(torch.int16), b.flatten(1).to(torch.int16)
    rows = [((x[:, None] - b16[None]).abs() > levels).float().mean(-1) for x in a16.split(8)]
    return torch.cat(rows)


def _classes(
    images: torch.Tensor, probs: list[float], labels: list[str], tolerance: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """Merge outcomes no output could tell apart (within ``tolerance``).

    Returns:
        The distinct outcome images (flat), the class of each, and each class's probability
        and ops.
    """
    unique, inverse = torch.unique(images.flatten(1), dim=0, return_inverse=True)
    parent = list(range(len(unique)))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    levels, share = TOLERANCE[tolerance]
    for i, j in (_far(unique, unique, levels) <= share).nonzero().tolist():
        parent[root(i)] = root(j)
    roots = [root(i) for i in range(len(unique))]
    keys = sorted(set(roots))
    prob = torch.zeros(len(keys), dtype=torch.float64)
    ops: list[set[str]] = [set() for _ in keys]
    member = torch.tensor([keys.index(roots[int(k)]) for k in inverse])
    for row, (p, label) in enumerate(zip(probs, labels, strict=True)):
        prob[member[row]] += p
        ops[member[row]].add(label or "-")
    of_unique = torch.tensor([keys.index(r) for r in roots])
    return unique, of_unique, prob, ["|".join(sorted(o)) for o in ops]


def compare(
    outputs: np.ndarray, policy: Policy, image: torch.Tensor, timm: bool, tolerance: str
) -> dict[str, float]:
    """Check ``outputs`` against every outcome; return the worst figures found."""
    unique, of_unique, prob, ops = _classes(*outcomes(policy, image, timm), tolerance)
    levels, share = TOLERANCE[tolerance]
    got = torch.from_numpy(outputs)
    candidates = unique.view(-1, *image.shape)
    distance, nearest = _far(got, candidates, levels).min(dim=1)
    worst = float(distance.max())
    assert worst <= share, f"an output is no outcome of ours: {worst:.3f} values differ"
    counts = torch.bincount(of_unique[nearest], minlength=len(prob)).double()
    worst_z = 0.0
    groups: dict[str, list[float]] = {}
    for k in range(len(prob)):
        for key in (f"outcome {k} ({ops[k]})", ops[k]):
            groups.setdefault(key, [0.0, 0.0])
            groups[key][0] += float(prob[k])
            groups[key][1] += float(counts[k])
    for key, (p, count) in groups.items():
        expected = DRAWS * p
        spread = math.sqrt(DRAWS * p * max(1 - p, 0.0)) + 1e-9
        score = abs(count - expected) / spread
        limit = Z if expected >= 5 else (Z * spread + 3) / spread
        assert score <= limit, f"{key}: {count:.0f} of {DRAWS} drawn, {expected:.1f} expected"
        worst_z = max(worst_z, score if expected >= 5 else 0.0)
    return {"far": worst, "z": worst_z, "classes": len(prob)}


def check_case(case: Case, exported: dict[str, np.ndarray]) -> list[dict[str, float]]:
    """Compare one case's outputs on every image and input kind; return the figures."""
    figures = []
    for key, image in IMAGES.items():
        for mode in case.modes:
            outputs = exported["|".join((f"{case.framework}:{case.id}", key, mode))]
            tolerance = case.tolerance or ("tensor" if mode == "tensor" else "pil")
            figures.append(compare(outputs, case.policy, image, case.timm, tolerance))
    return figures


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.framework}:{c.id}")
def test_export_matches_the_applier(case: Case, exported: dict[str, np.ndarray]) -> None:
    if case.timm and not HAS_TIMM:
        pytest.skip("timm is not installed (pip install -e '.[dev]' brings it)")
    check_case(case, exported)


@pytest.mark.parametrize("framework", ["torchvision", "timm"])
def test_snippets_import_nothing_of_ours(framework: str) -> None:
    for policy in (*PRESETS.values(), *(c.policy for c in CASES if c.framework == framework)):
        code = to_python_snippet(policy, framework)  # type: ignore[arg-type]
        imports = {line.split()[1].partition(".")[0] for line in code.splitlines()
                   if line.startswith(("import ", "from "))}  # fmt: skip
        assert imports <= {"math", "PIL", "torch", "torchvision", "timm"}, imports


def test_timm_refuses_ops_it_has_not() -> None:
    for name in NO_TIMM:
        policy = Policy(kind="subpolicies", sub_policies=[[OpStep(op=name, p=0.5, magnitude=0.5)]])
        with pytest.raises(ValueError, match=f"{name}' has no timm equivalent"):
            to_python_snippet(policy, "timm")


def test_runner_refuses_augsearch(tmp_path: Path) -> None:
    """The subprocess really cannot import ops: a snippet that needs it fails there."""
    head = RUNNER.split("import numpy as np")[0]
    done = subprocess.run(
        [sys.executable, "-I", "-c", head + "from ops.policy import Policy\n"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode != 0 and "No module named 'ops" in done.stderr
