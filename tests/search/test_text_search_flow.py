"""Text searches through the search lifecycle: spec rules, the worker's text trials, the final
checkpoint (a text checkpoint), on a small ``wordnet-topics``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from pydantic import ValidationError

from ops.text_presets import TEXT_PRESETS
from search.checkpoints import make_artifact_store
from search.runner import run
from search.spec import SearchSpec, baseline_policy
from search.text.checkpoint import load_text_checkpoint
from search.text.dataset import TextDataset
from search.text.trainer import accuracy
from search.text.trials import split_text_search

SMALL = {"source": "wordnet-topics", "topics": ["animal", "food", "plant"], "per_class": 40}


def _spec(**extra: object) -> SearchSpec:
    values = {"dataset": SMALL, "strategy": "eda", "n_trials": 2, "text_recipe": {"epochs": 3},
              "final_pick": {"candidates": 1, "presets": 1}, **extra}  # fmt: skip
    return SearchSpec.model_validate(values)


def test_a_text_spec_takes_text_baselines_by_default() -> None:
    spec = _spec()
    assert spec.is_text and spec.baselines == ["none", "eda-defaults"]
    assert baseline_policy("eda-defaults") == TEXT_PRESETS["eda"]
    assert SearchSpec.model_validate_json(spec.model_dump_json()) == spec
    # Text trainings are cheap: the final pick retrains every baseline unless told otherwise.
    default = SearchSpec.model_validate({"dataset": SMALL, "strategy": "eda"})
    assert default.final_pick.presets == 2 and default.final_pick.candidates == 2
    assert spec.final_pick.presets == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"strategy": "randaugment"}, "searched with strategy 'eda'"),
        ({"baselines": ["none", "randaugment-2-9"]}, "augment images; a text search takes"),
        ({"dataset": {"source": "digits"}}, "are for text datasets"),
        ({"dataset": {"source": "digits"}, "strategy": "randaugment",
          "baselines": ["eda-defaults"]}, "are for text datasets"),
    ],
)  # fmt: skip
def test_text_and_image_rules_do_not_mix(extra: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _spec(**extra)


def test_splits_keep_the_test_texts_out() -> None:
    texts = [f"w{i} x{i % 3}" for i in range(60)]
    labels = np.arange(60) % 3
    splits = np.where(np.arange(60) < 12, 2, 0)  # 2: test
    ds = TextDataset(texts, labels, ["a", "b", "c"], splits=splits)
    data = split_text_search(ds, _spec(train_size=20))
    seen = set(data.final_train.texts) | set(data.val.texts)
    assert data.test is not None and not seen & set(data.test.texts)
    assert len(data.search_train) == 20 and set(data.search_train.texts) <= set(
        data.final_train.texts
    )
    assert not set(data.final_train.texts) & set(data.val.texts)


def test_a_text_search_runs_to_a_text_checkpoint(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    result = run(_spec(), storage=f"sqlite:///{tmp_path}/s.db", artifact_dir=str(tmp_path / "a"))
    assert result.state == "done", result.status
    assert result.policy is not None and result.policy.kind in ("text", "none")
    assert result.accuracy is not None and result.test_accuracy is not None
    study = optuna.load_study(study_name=f"search-{result.search_id}", storage=result.storage_url)
    roles = [t.user_attrs.get("role", "search") for t in study.trials]
    assert roles.count("baseline") == 2 and roles.count("search") == 2 and "final" in roles
    for trial in study.trials:
        assert trial.user_attrs["policy"]["kind"] in ("text", "none")
    # Few validation texts: the finals are compared by 5-fold cross-validation over the
    # training texts; the held-out validation accuracy of the served model is kept beside it.
    finals = [t for t in study.trials if t.user_attrs.get("role") == "final"]
    assert finals and all(t.value == t.user_attrs["cv_accuracy"] for t in finals)
    assert all(t.user_attrs["cv_folds"] == 5 and 0 <= t.user_attrs["val_accuracy"] <= 1
               for t in finals)  # fmt: skip
    target = tmp_path / "model.safetensors"
    assert result.checkpoint is not None
    optuna.artifacts.download_artifact(
        artifact_store=make_artifact_store(tmp_path / "a"),
        file_path=str(target),
        artifact_id=result.checkpoint,
    )
    model, tokenizer, card = load_text_checkpoint(target)
    assert card.classes == ["animal", "food", "plant"] and card.policy == result.policy.model_dump(
        mode="json"
    )
    assert isinstance(result.model_card, dict) and "vocabulary" not in result.model_card
    assert result.model_card["vocabulary_size"] == len(card.vocabulary)
    # The checkpoint is the model that scored the recorded test accuracy.
    from search.text.loader import load_text_dataset

    test = load_text_dataset(_spec().dataset).part("test")
    assert accuracy(model, tokenizer, test) == pytest.approx(result.test_accuracy)


def test_the_image_loader_refuses_a_text_dataset() -> None:
    from search.datasets import DatasetError, load_dataset

    with pytest.raises(DatasetError, match="'wordnet-topics' holds texts, not images"):
        load_dataset(_spec().dataset)
