"""One step of a self-training job: the teacher's training, or one student's.

`train_step` is the pure part (data in, trained model and its predictions on the unlabelled
images out), shared by the workers' trials (`search.self_training.trials`) and the benchmark.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ops.policy import Policy, load_policy
from search.datasets import ImageDataset
from search.self_training.pseudo import (
    PseudoLabels,
    predict_probs,
    select_pseudo_labels,
    student_set,
)
from search.self_training.spec import SelfTrainingJob
from search.trainer import TrainResult, evaluate, train
from search.training.recipe import TrainerRecipe

EpochCallback = Callable[[int, dict[str, float]], None]


@dataclass
class StepOutcome:
    """What one step produced.

    Attributes:
        result: the training's result (model, weights, metrics, history).
        recipe: the recipe it trained with, fixed for its data.
        policy: the augmentation it trained with.
        probs: its predictions on the unlabelled images (the next student's labels).
        pseudo: the pseudo-labels it trained on (students only).
        metrics: ``val_accuracy``, ``val_loss`` and, with a test part, ``test_accuracy``.
    """

    result: TrainResult
    recipe: TrainerRecipe
    policy: Policy
    probs: torch.Tensor
    pseudo: PseudoLabels | None = None
    metrics: dict[str, float] = field(default_factory=dict)


def student_policy(job: SelfTrainingJob) -> Policy:
    """The students' augmentation: the search's policy, or only its base (ablation)."""
    policy = load_policy(job.policy)
    if job.options.noise_policy:
        return policy
    return Policy.model_validate(
        {"schema_version": 1, "kind": "none", "base": policy.base.model_dump(mode="json")}
    )


def train_step(
    job: SelfTrainingJob,
    step: int,
    labelled: ImageDataset,
    val: ImageDataset,
    unlabelled: torch.Tensor,
    *,
    teacher_probs: torch.Tensor | None,
    device: str,
    test: ImageDataset | None = None,
    on_epoch: EpochCallback | None = None,
) -> StepOutcome:
    """Train step ``step`` of a job (0: the teacher) and label the unlabelled images with it.

    Args:
        job: the job.
        step: 0 for the teacher, k >= 1 for the k-th student.
        labelled: the labelled training part.
        val: the validation part (the search's).
        unlabelled: uint8 (N, C, H, W) unlabelled images of the labelled part's shape.
        teacher_probs: the previous step's predictions (needed for a student).
        device: torch device.
        test: a held-out part, evaluated when given.
        on_epoch: called after each epoch (see `search.trainer.train`).

    Raises:
        ValueError: a student step without the teacher's predictions, or predictions that
            do not match the unlabelled images.
    """
    soft_targets = None
    pseudo = None
    train_set = labelled
    if step == 0:
        recipe, policy = job.teacher_recipe(), load_policy(job.policy)
    else:
        if teacher_probs is None or teacher_probs.shape[0] != unlabelled.shape[0]:
            raise ValueError("a student needs its teacher's predictions on every unlabelled image")
        options = job.options
        pseudo = select_pseudo_labels(
            teacher_probs,
            mode=options.pseudo_labels,
            threshold=options.confidence_threshold,
            balance=options.balance,
            per_class=options.per_class,
        )
        soft = options.pseudo_labels == "soft"
        train_set, soft_targets = student_set(labelled, unlabelled, pseudo, soft)
        recipe, policy = job.student_recipe(), student_policy(job)
        if recipe.batch_size is None and recipe.epochs is None:
            # The teacher's batch size and step count: one student costs about one teacher
            # training (times ``length_factor``), however many images were pseudo-labelled.
            batch = (
                job.teacher_recipe()
                .for_size(len(labelled), accelerator=torch.device(device).type != "cpu")
                .batch_size
            )
            recipe = recipe.model_copy(update={"batch_size": batch})
    recipe = recipe.for_size(len(train_set), accelerator=torch.device(device).type != "cpu")
    result = train(
        recipe,
        policy,
        train_set,
        val,
        device=device,
        seed=job.seed + step,
        on_epoch=on_epoch,
        soft_targets=soft_targets,
    )
    probs = predict_probs(
        result.model,
        unlabelled,
        device,
        mean=result.mean,
        std=result.std,
        batch_size=recipe.eval_batch_size,
        amp=recipe.amp,
    )
    metrics: dict[str, float] = {
        "val_accuracy": float(result.metrics["val_accuracy"]),
        "val_loss": float(result.metrics["val_loss"]),
    }
    if test is not None:
        scores = evaluate(result.model, test, device, mean=result.mean, std=result.std)
        metrics["test_accuracy"] = float(scores["accuracy"])
    return StepOutcome(result, recipe, policy, probs, pseudo, metrics)


def step_record(outcome: StepOutcome) -> dict[str, Any]:
    """The trial attrs that describe a finished step to the service."""
    record: dict[str, Any] = {
        "val_loss": outcome.metrics["val_loss"],
        "recipe": outcome.recipe.model_dump(mode="json", exclude_defaults=True),
    }
    if "test_accuracy" in outcome.metrics:
        record["test_accuracy"] = outcome.metrics["test_accuracy"]
    if outcome.pseudo is not None:
        record["pseudo_labels"] = outcome.pseudo.stats
    return record
