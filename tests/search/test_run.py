"""A whole search on digits with two worker processes on SQLite."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search import lifecycle
from search.checkpoints import load_model_card, make_artifact_store
from search.datasets import load_dataset
from search.objective import split_for_search
from search.runner import run
from search.spec import SearchSpec
from search.trainer import evaluate

pytestmark = pytest.mark.slow


def test_two_workers_run_exactly_the_budget(tmp_path: Path) -> None:
    spec = SearchSpec.model_validate(
        {
            "dataset": {"source": "digits"},
            "strategy": "autoaugment",
            "num_sub_policies": 2,
            "n_trials": 3,
            "baselines": ["none", "randaugment-2-9"],
            "train_size": 100,
            "recipe": {"arch": "resnet8", "epochs": 1, "batch_size": 50},
            "final_recipe": {"arch": "resnet8", "epochs": 1, "batch_size": 50, "train_subset": 200},
            "parallelism": 2,
            "final_pick": {"candidates": 1, "presets": 1},
        }
    )
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    result = run(spec, storage=url, n_workers=2, artifact_dir=tmp_path / "art", timeout=300)
    assert result.state == "done"
    study = optuna.load_study(study_name=lifecycle.study_name(result.search_id), storage=url)
    trials = study.get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    roles = sorted(lifecycle.role_of(t) for t in complete)
    assert roles == ["baseline", "baseline", "final", "final", "search", "search", "search"]
    assert len(result.status.result["final_pick"]) == 2
    assert {t.user_attrs["worker"] for t in trials} == {
        f"run-{result.search_id}-0",
        f"run-{result.search_id}-1",
    }
    assert set(result.status.baselines) == {"none", "randaugment-2-9"}
    assert all(v is not None for v in result.status.baselines.values())

    model = result.load_model()
    data = split_for_search(load_dataset(spec.dataset), spec)
    card = load_model_card(make_artifact_store(tmp_path / "art"), str(result.model_card))
    assert card.sha256 == result.sha256 and card.policy == result.status.result["policy"]
    metrics = evaluate(model, data.val, "cpu", mean=card.mean, std=card.std)
    assert result.accuracy is not None
    assert metrics["accuracy"] == pytest.approx(result.accuracy, abs=1e-9)
