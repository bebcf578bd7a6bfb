"""SearchSpec validation: bounds, incompatible combinations, defaults; errors name the field."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from search.datasets import DigitsSpec
from search.spec import DEFAULT_BASELINES, DEFAULT_FINAL_ARCH, FINAL_EPOCHS_FACTOR, SearchSpec
from search.trainer import TrainerRecipe


def _spec(**kw: Any) -> SearchSpec:
    return SearchSpec.model_validate({"dataset": {"source": "digits"}, **kw})


def test_defaults_fill_final_recipe_and_baselines() -> None:
    spec = SearchSpec(dataset=DigitsSpec(), recipe=TrainerRecipe(epochs=4))
    assert spec.final.epochs == 4 * FINAL_EPOCHS_FACTOR
    assert spec.recipe.arch == "airbench" and spec.final.arch == DEFAULT_FINAL_ARCH
    assert tuple(spec.baselines) == DEFAULT_BASELINES
    assert SearchSpec.model_validate_json(spec.model_dump_json()) == spec


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n_trials", 0),
        ("n_trials", 10_001),
        ("num_sub_policies", 0),
        ("val_fraction", 0.0),
        ("train_size", 5),
        ("seed", -1),
        ("parallelism", 0),
        ("priority", 1000),
        ("strategy", "genetic"),
        ("sampler", "nsga2"),
        ("pruner", "wilcoxon"),
        ("baselines", ["autoaugment-mnist"]),
    ],
)
def test_out_of_range_values_name_the_field(field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as err:
        _spec(**{field: value})
    assert field in str(err.value)


def test_unknown_field_is_refused() -> None:
    with pytest.raises(ValidationError, match="budget"):
        _spec(budget=3)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"strategy": "autoaugment", "sampler": "cmaes"}, "cmaes"),
        ({"strategy": "fast-autoaugment", "sampler": "cmaes"}, "cmaes"),
        ({"strategy": "autoaugment", "sampler": "grid"}, "grid"),
        ({"strategy": "trivialaugment", "n_trials": 5}, "n_trials must be 1"),
        ({"strategy": "none", "n_trials": 2}, "n_trials must be 1"),
        ({"baselines": ["none", "none"]}, "baselines must not repeat"),
        (
            {"strategy": "fast-autoaugment", "n_trials": 2, "fast_autoaugment": {"top_n": 3}},
            "top_n",
        ),
        (
            {"strategy": "randaugment", "sampler": "grid",
             "co_search": {"mixup_alpha": {"low": 0, "high": 1}}},
            "grid",
        ),
        ({"co_search": {"label_smoothing": {"low": 0.0, "high": 0.9}}}, "label_smoothing"),
        ({"co_search": {"weight_decay": {"low": 0.0, "high": 0.01, "log": True}}}, "log"),
        ({"co_search": {"mixup_alpha": {"low": 1.0, "high": 0.5}}}, "high"),
    ],
)  # fmt: skip
def test_incompatible_combinations_are_explained(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _spec(**kw)


def test_compatible_combinations_pass() -> None:
    assert _spec(strategy="randaugment", sampler="cmaes").sampler == "cmaes"
    assert _spec(strategy="randaugment", sampler="grid").sampler == "grid"
    assert _spec(strategy="none", n_trials=1, baselines=[]).baselines == []
