"""Self-training: unlabelled images, pseudo-labels, soft-target training, the job lifecycle,
and a worker running a whole job (teacher, students, retries) through the Optuna storage."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import TrialState
from PIL import Image

from search.checkpoints import load_checkpoint, load_model_card, make_artifact_store
from search.datasets import DatasetError, DecodeLimits
from search.datasets.unlabelled import UnlabelledSpec, load_unlabelled, to_channels
from search.models import build_model
from search.self_training import (
    SelfTrainingJob,
    advance,
    cancel,
    create_job,
    select_pseudo_labels,
    status,
)
from search.self_training import lifecycle as jobs
from search.spec import SearchSpec
from search.storage import make_storage
from search.trainer import TrainerRecipe, train
from search.worker import Worker

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _write_images(root: Path, count: int, size: int = 12, rgb: bool = False) -> None:
    rng = np.random.default_rng(0)
    for i in range(count):
        folder = root / ("a" if i % 2 else "b/c")
        folder.mkdir(parents=True, exist_ok=True)
        shape = (size, size, 3) if rgb else (size, size)
        (folder / f"{i}.png").write_bytes(_png(rng.integers(0, 255, shape, dtype=np.uint8)))


# Unlabelled images ---------------------------------------------------------------------------


def test_folder_of_any_layout_is_decoded_to_the_datasets_shape(tmp_path: Path) -> None:
    _write_images(tmp_path / "u", 6, size=12, rgb=True)
    (tmp_path / "u" / ".hidden.png").write_bytes(b"not read")
    (tmp_path / "u" / "notes.txt").write_text("ignored")
    spec = UnlabelledSpec(source="folder", path=str(tmp_path / "u"), channels=1, image_size=(8, 10))
    images = load_unlabelled(spec)
    assert images.shape == (6, 1, 8, 10) and images.dtype == torch.uint8


def test_archive_goes_through_the_archive_checks(tmp_path: Path) -> None:
    _write_images(tmp_path / "u", 4)
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as zf:
        for f in sorted((tmp_path / "u").rglob("*.png")):
            zf.write(f, f.relative_to(tmp_path / "u"))
    spec = UnlabelledSpec(source="archive", path=str(good), channels=3, image_size=(12, 12))
    assert load_unlabelled(spec).shape == (4, 3, 12, 12)
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../escape.png", _png(np.zeros((8, 8), np.uint8)))
    with pytest.raises(DatasetError, match="escaping"):
        load_unlabelled(spec.model_copy(update={"path": str(bad)}))


def test_unlabelled_errors_are_clear(tmp_path: Path) -> None:
    spec = UnlabelledSpec(
        source="folder", path=str(tmp_path / "none"), channels=1, image_size=(8, 8)
    )
    with pytest.raises(DatasetError, match="does not exist"):
        load_unlabelled(spec)
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "x.png").write_bytes(_png(np.zeros((8, 8), np.uint8)))
    with pytest.raises(DatasetError, match="at least 2"):
        load_unlabelled(spec.model_copy(update={"path": str(tmp_path / "one")}))
    (tmp_path / "one" / "y.png").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match=r"could not be decoded.*y\.png"):
        load_unlabelled(spec.model_copy(update={"path": str(tmp_path / "one")}))
    _write_images(tmp_path / "big", 4, size=16)
    small = DecodeLimits(max_dataset_bytes=500)
    with pytest.raises(DatasetError, match="max_dataset_bytes"):
        load_unlabelled(spec.model_copy(update={"path": str(tmp_path / "big")}), small)


def test_channels_are_converted_both_ways() -> None:
    grey = torch.full((2, 1, 4, 4), 100, dtype=torch.uint8)
    assert torch.equal(to_channels(grey, 3)[:, 2], grey[:, 0])
    red = torch.zeros((1, 3, 2, 2), dtype=torch.uint8)
    red[:, 0] = 200
    assert to_channels(red, 1).flatten().tolist() == [60] * 4  # 0.299 * 200, rounded


# Pseudo-labels -------------------------------------------------------------------------------


def test_threshold_and_balance() -> None:
    probs = torch.tensor(
        [[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.7, 0.3, 0.0], [0.2, 0.8, 0.0], [0.5, 0.5, 0.0],
         [0.1, 0.1, 0.8], [0.4, 0.35, 0.25]]
    )  # fmt: skip
    unbalanced = select_pseudo_labels(probs, threshold=0.6, balance=False)
    assert unbalanced.indices.tolist() == [0, 1, 2, 3, 5]
    assert unbalanced.stats["confident"] == 5 and unbalanced.stats["per_class"] == [3, 1, 1]
    balanced = select_pseudo_labels(probs, threshold=0.6, per_class=2)
    # class 0 keeps its two most confident images, classes 1 and 2 repeat their only one
    assert sorted(balanced.indices.tolist()) == [0, 1, 3, 3, 5, 5]
    assert balanced.stats["per_class"] == [2, 2, 2]
    median = select_pseudo_labels(probs, threshold=0.0)
    assert median.stats["per_class"] == [1, 1, 1]  # the median of the counts 5, 1, 1
    soft = select_pseudo_labels(probs, mode="soft", threshold=0.75, balance=False)
    assert torch.allclose(soft.targets, probs[[0, 1, 3, 5]])
    hard = select_pseudo_labels(probs, threshold=0.75, balance=False)
    assert hard.targets.sum(1).tolist() == [1.0] * 4 and hard.targets.max() == 1.0


def test_pseudo_label_errors() -> None:
    with pytest.raises(ValueError, match="mode"):
        select_pseudo_labels(torch.rand(3, 2), mode="fuzzy")
    with pytest.raises(ValueError, match="classes >= 2"):
        select_pseudo_labels(torch.rand(3))
    nothing = select_pseudo_labels(torch.full((4, 2), 0.5), threshold=0.9)
    assert nothing.indices.numel() == 0 and nothing.stats["mean_confidence"] is None


# Soft targets in the trainer ----------------------------------------------------------------


def _tiny_sets() -> tuple[object, object]:
    from search.datasets import SyntheticSpec, load_dataset, stratified_split

    ds = load_dataset(SyntheticSpec(num_classes=2, per_class=16, size=8, channels=1))
    return stratified_split(ds, 0.25, seed=0)


def test_one_hot_soft_targets_train_exactly_as_labels() -> None:
    train_set, val_set = _tiny_sets()
    recipe = TrainerRecipe(arch="resnet8", epochs=2, batch_size=8, label_smoothing=0.1)
    from ops.policy import Policy

    policy = Policy.model_validate({"schema_version": 1, "kind": "none"})
    plain = train(recipe, policy, train_set, val_set, device="cpu", seed=3)  # type: ignore[arg-type]
    one_hot = torch.nn.functional.one_hot(train_set.labels, 2).float()  # type: ignore[attr-defined]
    soft = train(recipe, policy, train_set, val_set, device="cpu", seed=3, soft_targets=one_hot)  # type: ignore[arg-type]
    for key, value in plain.state_dict.items():
        assert torch.allclose(value.float(), soft.state_dict[key].float(), atol=1e-5), key
    with pytest.raises(ValueError, match="soft_targets must be"):
        train(recipe, policy, train_set, val_set, device="cpu", seed=3,  # type: ignore[arg-type]
              soft_targets=one_hot[:3])  # fmt: skip


def test_drop_path_recipe_refuses_airbench() -> None:
    with pytest.raises(ValueError, match="residual blocks"):
        TrainerRecipe(arch="airbench", drop_path=0.1)
    assert TrainerRecipe(arch="resnet8", drop_path=0.2).drop_path == 0.2


# The job lifecycle and a worker running it ------------------------------------------------------


def _job(tmp_path: Path, iterations: int = 2, **options: object) -> SelfTrainingJob:
    _write_images(tmp_path / "unlabelled", 24, size=8)
    search = SearchSpec.model_validate(
        {
            "dataset": {"source": "synthetic", "num_classes": 2, "per_class": 12, "size": 8,
                        "channels": 1},
            "strategy": "none",
            "n_trials": 1,
            "baselines": [],
            "recipe": {"arch": "resnet8", "epochs": 1, "batch_size": 8},
            "final_recipe": {"arch": "resnet8", "epochs": 1, "batch_size": 8},
            "holdout_fraction": 0.2,
        }
    )  # fmt: skip
    return SelfTrainingJob(
        search_id="1",
        search=search,
        policy={"schema_version": 1, "kind": "randaugment", "n": 1, "m": 0.5},
        unlabelled=UnlabelledSpec(
            source="folder", path=str(tmp_path / "unlabelled"), channels=1, image_size=(8, 8)
        ),
        options={"iterations": iterations, "student": {"drop_path": 0.1, "dropout": 0.2},
                 **options},  # type: ignore[arg-type]
    )  # fmt: skip


def test_student_recipe_and_invalid_students(tmp_path: Path) -> None:
    job = _job(tmp_path, student={"arch": "resnet20", "drop_path": 0.2, "length_factor": 2})
    recipe = job.student_recipe()
    assert (recipe.arch, recipe.drop_path, recipe.epochs) == ("resnet20", 0.2, 2)
    with pytest.raises(ValueError, match="residual blocks"):
        _job(tmp_path, student={"arch": "airbench", "drop_path": 0.1})


def test_worker_runs_teacher_and_students_and_records_the_best(tmp_path: Path) -> None:
    url, art = f"sqlite:///{tmp_path / 'o.db'}", tmp_path / "art"
    storage = make_storage(url, heartbeat_interval=30)
    job = _job(tmp_path, pseudo_labels="soft")
    create_job(storage, "7", job)
    create_job(storage, "7", job)  # idempotent
    with pytest.raises(ValueError, match="other settings"):
        create_job(storage, "7", job.model_copy(update={"search_id": "2"}))
    assert [s["role"] for s in status(storage, "7").steps] == ["teacher"]
    worker = Worker(url, artifact_store=art, poll_interval=0.05, idle_exit=0.5)
    assert worker.run() == 3
    done = status(storage, "7")
    assert done.state == jobs.DONE and done.trainings == 3
    assert [(s["role"], s["state"]) for s in done.steps] == [
        ("teacher", "COMPLETE"), ("student", "COMPLETE"), ("student", "COMPLETE")
    ]  # fmt: skip
    student = done.steps[1]
    assert student["pseudo_labels"]["unlabelled"] == 24
    assert student["test_accuracy"] is not None and len(student["epochs"]) == 1
    result = done.result or {}
    assert result["best_step"] in (1, 2) and result["teacher_accuracy"] is not None
    store = make_artifact_store(art)
    card = load_model_card(store, result["model_card"])
    state, _ = load_checkpoint(store, result["checkpoint"], expected_sha256=result["sha256"])
    assert card.recipe["drop_path"] == 0.1 and card.arch == "resnet8"
    model = build_model(card.arch, card.num_classes, card.in_channels, card.image_size,
                        dropout=0.2, drop_path=0.1)  # fmt: skip
    model.load_state_dict(state)
    assert advance(storage, "7").state == jobs.DONE  # idempotent once done


def test_failed_steps_are_retried_then_fail_the_job(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'o.db'}"
    storage = make_storage(url, heartbeat_interval=30)
    job = _job(tmp_path, iterations=1)
    # The unlabelled folder disappears: every teacher attempt fails while loading it.
    create_job(storage, "9", job.model_copy(
        update={"unlabelled": job.unlabelled.model_copy(update={"path": str(tmp_path / "gone")})}
    ))  # fmt: skip
    worker = Worker(url, artifact_store=tmp_path / "art", poll_interval=0.05, idle_exit=0.5)
    worker.run()
    failed = status(storage, "9")
    assert failed.state == jobs.FAILED
    assert failed.steps[0]["attempts"] == jobs.MAX_ATTEMPTS
    assert "step 0 failed 3 times" in (failed.error or "") and "does not exist" in (
        failed.error or ""
    )


def test_cancel_stops_the_job_and_workers_skip_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'o.db'}"
    storage = make_storage(url, heartbeat_interval=30)
    create_job(storage, "5", _job(tmp_path))
    assert cancel(storage, "5").state == jobs.CANCELLED
    worker = Worker(url, artifact_store=tmp_path / "art", poll_interval=0.05, idle_exit=0.3)
    assert worker.run() == 0
    study = optuna.load_study(study_name=jobs.study_name("5"), storage=storage)
    assert [t.state for t in study.trials] == [TrialState.WAITING]
    with pytest.raises(jobs.JobNotFound):
        status(storage, "nope")


@pytest.mark.slow
def test_a_killed_workers_step_is_failed_by_its_heartbeat_and_retried(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    url, art = f"sqlite:///{tmp_path / 'o.db'}", tmp_path / "art"
    storage = make_storage(url, heartbeat_interval=1, grace_period=2)
    job = _job(tmp_path, iterations=1)
    slow = job.search.model_copy(
        update={"final_recipe": TrainerRecipe(arch="resnet8", epochs=40, batch_size=8)}
    )
    create_job(storage, "k", job.model_copy(update={"search": slow}))
    code = (
        "from search.fleet import run_worker\n"
        f"run_worker({url!r}, 'cpu', {str(art)!r}, heartbeat_interval=1, grace_period=2, "
        "poll_interval=0.1, name='victim')\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ})
    study = optuna.load_study(study_name=jobs.study_name("k"), storage=storage)
    deadline = time.monotonic() + 90
    while not any(len(t.user_attrs.get("epochs", [])) >= 1 for t in study.trials):
        assert time.monotonic() < deadline, "the worker never started the teacher"
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(2.5)  # past the grace period: the teacher's trial is stale
    worker = Worker(url, artifact_store=art, heartbeat_interval=1, grace_period=2,
                    poll_interval=0.05, idle_exit=1.0)  # fmt: skip
    worker.run()
    done = status(storage, "k")
    assert done.state == jobs.DONE, done
    teacher = [t for t in study.get_trials() if jobs.step_of(t) == 0]
    assert [t.state for t in teacher] == [TrialState.FAIL, TrialState.COMPLETE]
    assert done.steps[0]["attempts"] == 2


def test_a_trial_started_with_no_step_waiting_is_pruned_and_not_counted(tmp_path: Path) -> None:
    from search.self_training.trials import job_key

    url = f"sqlite:///{tmp_path / 'o.db'}"
    storage = make_storage(url, heartbeat_interval=30)
    create_job(storage, "r", _job(tmp_path, iterations=1))
    plain = make_storage(url, heartbeat_interval=None)
    study = optuna.load_study(study_name=jobs.study_name("r"), storage=plain)
    taken = study.ask()  # another worker took the teacher meanwhile
    worker = Worker(url, artifact_store=tmp_path / "art", poll_interval=0.05)
    assert worker.self_training is not None
    worker.self_training.run(job_key("r"))
    fresh = [t for t in study.get_trials() if t.number != taken.number]
    assert [t.state for t in fresh] == [TrialState.PRUNED]
    current = status(storage, "r")
    assert [(s["step"], s["attempts"], s["state"]) for s in current.steps] == [(0, 1, "RUNNING")]
    assert current.trainings == 0
