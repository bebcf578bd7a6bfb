"""The exported text snippet runs without augsearch and matches ops.text in distribution.

Every snippet runs in one subprocess where ``ops``, ``search`` and ``service`` cannot be imported
(the import hook of tests/ops/test_ops_export_pure.py, ``python -I``, another working
directory). For each case, the outputs of ``augment`` on one sentence and those of
:class:`ops.text.TextAugmenter` must be one distribution (two-sample chi-square over the output
sentences, rare ones pooled), the op behind each output must come up at the policy's rate, and
``augment_copies`` must give the policy's copies.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from ops.lexicon import WordNet
from ops.policy import OpStep, Policy, TextAugment, TextOpStep
from ops.text import TextAugmenter
from ops.text_export import to_text_snippet
from ops.text_presets import TEXT_PRESETS, eda_policy
from tests.ops.test_ops_export_pure import RUNNER

DRAWS = 2000
SENTENCE = "the old farmer sold a brown horse at the market"
P_MIN = 1e-4

RUN = (
    RUNNER.split("import numpy as np")[0]
    + r"""
import numpy as np

cases = json.load(open(sys.argv[1]))
out = {}
for case in cases:
    namespace = {}
    exec(case["code"], namespace)
    rng = np.random.default_rng(case["seed"])
    out[case["id"]] = {
        "augmented": [namespace["augment"](case["sentence"], rng) for _ in range(case["draws"])],
        "copies": len(namespace["augment_copies"](case["sentence"], rng)),
    }
assert not {m.partition(".")[0] for m in sys.modules} & {"ops", "search", "service"}
json.dump(out, open(sys.argv[2], "w"))
"""
)


def _one(op: str, magnitude: float) -> Policy:
    return Policy(kind="text", text=TextAugment(ops=[TextOpStep(op=op, magnitude=magnitude)]))  # type: ignore[arg-type]


MIXED = Policy(
    kind="text",
    text=TextAugment(
        copies=3,
        ops=[
            TextOpStep(op="SynonymReplacement", magnitude=0.6),
            TextOpStep(op="RandomSwap", magnitude=0.0),
            TextOpStep(op="RandomDeletion", magnitude=0.4),
            TextOpStep(op="RandomInsertion", magnitude=0.2),
        ],
    ),
)
CASES = {
    **{op: _one(op, 0.2) for op in ("SynonymReplacement", "RandomInsertion", "RandomSwap")},
    "RandomDeletion": _one("RandomDeletion", 0.3),
    "eda": TEXT_PRESETS["eda"],
    "strong": eda_policy(alpha=0.3, copies=2),
    "mixed": MIXED,
    "none": TEXT_PRESETS["none"],
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("text-export")
    cases = [
        {"id": key, "code": to_text_snippet(policy), "sentence": SENTENCE, "draws": DRAWS,
         "seed": 7}
        for key, policy in CASES.items()
    ]  # fmt: skip
    (tmp / "cases.json").write_text(json.dumps(cases))
    (tmp / "run.py").write_text(RUN)
    done = subprocess.run(
        [sys.executable, "-I", str(tmp / "run.py"), "cases.json", "out.json"],
        cwd=tmp, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads((tmp / "out.json").read_text())
    return result


def _ours(policy: Policy) -> list[str]:
    augmenter = TextAugmenter(policy, lexicon=WordNet())
    return augmenter.augment([SENTENCE] * DRAWS, np.random.default_rng(11))


def _subsequence(short: list[str], long: list[str]) -> bool:
    rest = iter(long)
    return all(word in rest for word in short)


def _op_of(text: str) -> str:
    """Which op made ``text`` from SENTENCE, as far as the words tell.

    A synonym can be several words, so a replacement can change the length; a synonym holding
    the replaced word reads as an insertion (rare).
    """
    words, before = text.split(), SENTENCE.split()
    if words == before:
        return "unchanged"
    if sorted(words) == sorted(before):
        return "RandomSwap"
    if len(words) > len(before) and _subsequence(before, words):
        return "RandomInsertion"
    if len(words) < len(before) and _subsequence(words, before):
        return "RandomDeletion"
    return "SynonymReplacement"


def _same_distribution(a: list[str], b: list[str]) -> float:
    """p-value of a two-sample chi-square over the outputs, outputs seen < 10 times pooled."""
    ca, cb = Counter(a), Counter(b)
    rows = [(ca[k], cb[k]) for k in set(ca) | set(cb) if ca[k] + cb[k] >= 10]
    rare = (len(a) - sum(r[0] for r in rows), len(b) - sum(r[1] for r in rows))
    if sum(rare) >= 10:
        rows.append(rare)
    if len(rows) < 2:
        return 1.0 if set(ca) == set(cb) else 0.0
    return float(stats.chi2_contingency(np.array(rows).T)[1])


@pytest.mark.parametrize("key", list(CASES))
def test_export_matches_ops_text(key: str, exported: dict[str, Any]) -> None:
    policy = CASES[key]
    theirs = exported[key]["augmented"]
    assert isinstance(theirs, list)
    ours = _ours(policy)
    assert _same_distribution(theirs, ours) > P_MIN
    # The op rates: each active op is drawn uniformly.
    active = [s.op for s in policy.text.ops if s.magnitude > 0] if policy.text else []
    counts = Counter(_op_of(text) for text in theirs)
    ours_counts = Counter(_op_of(text) for text in ours)
    if "RandomSwap" not in active:
        assert counts["RandomSwap"] == 0
    for op in set(counts) | set(ours_counts):
        assert abs(counts[op] - ours_counts[op]) < 4.5 * np.sqrt(DRAWS / 2), (op, counts)
    copies = policy.text.copies if policy.text is not None and active else 0
    assert exported[key]["copies"] == copies


def test_op_rates_are_uniform(exported: dict[str, Any]) -> None:
    """EDA's techniques in equal parts (at alpha 0.3 every op changes this sentence)."""
    counts = Counter(_op_of(text) for text in exported["strong"]["augmented"])
    for op in ("RandomInsertion", "RandomSwap", "SynonymReplacement", "RandomDeletion"):
        assert abs(counts[op] / DRAWS - 0.25) < 0.04, counts


def test_none_changes_nothing(exported: dict[str, Any]) -> None:
    assert set(exported["none"]["augmented"]) == {SENTENCE}


def test_image_policies_are_refused() -> None:
    image = Policy(kind="subpolicies", sub_policies=[[OpStep(op="Rotate", p=0.5, magnitude=0.5)]])
    with pytest.raises(
        ValueError, match="image policy; the plain-Python export is for kind 'text'"
    ):
        to_text_snippet(image)


def test_snippet_imports_only_numpy_and_the_standard_library() -> None:
    code = to_text_snippet(TEXT_PRESETS["eda"])
    imports = {line.split()[1].partition(".")[0] for line in code.splitlines()
               if line.startswith(("import ", "from "))}  # fmt: skip
    assert imports <= {"__future__", "functools", "mmap", "os", "re", "pathlib", "numpy"}, imports


def test_image_appliers_and_exporters_refuse_text_policies() -> None:
    from ops.apply import BatchAugmenter, PolicyTransform
    from ops.export import to_albumentations, to_python_snippet, to_torchvision
    from ops.image import ImageAugmenter
    from ops.tv_transform import TorchvisionPolicy

    policy = TEXT_PRESETS["eda"]
    makers: list[Callable[[Policy], object]] = [BatchAugmenter, PolicyTransform, ImageAugmenter, TorchvisionPolicy, to_torchvision,
              to_albumentations, lambda p: to_python_snippet(p, "torchvision"),
              lambda p: to_python_snippet(p, "timm")]  # fmt: skip
    for make in makers:
        with pytest.raises(ValueError, match="a 'text' policy augments sentences"):
            make(policy)


def test_runner_cannot_import_augsearch(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-I", "-c", RUN.split("import numpy as np")[0] + "import ops.text\n"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode != 0 and "No module named 'ops" in done.stderr
