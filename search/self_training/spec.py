"""What a self-training job is: its options, and everything a worker needs to run it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from search.datasets.unlabelled import UnlabelledSpec
from search.spec import SearchSpec
from search.training.recipe import Arch, TrainerRecipe

_STRICT = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class StudentOptions(BaseModel):
    """The student's size and noise beyond the augmentation policy.

    Attributes:
        arch: student architecture (None: the teacher's). Noisy Student uses a student at
            least as large as its teacher.
        width: width multiplier (airbench; None: the teacher's).
        dropout: dropout rate of the student (None: the teacher's).
        drop_path: stochastic depth rate of its last residual block (ResNets and WRNs).
        length_factor: the student trains this many times longer than the teacher's recipe
            (it sees more images).
    """

    model_config = _STRICT

    arch: Arch | None = None
    width: float | None = Field(default=None, ge=0.0625, le=4.0)
    dropout: float | None = Field(default=None, ge=0.0, lt=1.0)
    drop_path: float = Field(default=0.0, ge=0.0, lt=1.0)
    length_factor: int = Field(default=1, ge=1, le=10)


class SelfTrainingOptions(BaseModel):
    """What a user chooses when launching self-training on a finished search.

    Attributes:
        iterations: students trained one after another (each the next one's teacher).
        pseudo_labels: ``soft`` (the teacher's whole distribution; the default: on ``digits``
            with 10% of the labels it beat hard labels, docs/benchmarks.md) or ``hard`` (its
            class).
        confidence_threshold: unlabelled images whose top teacher probability is below this
            are left out (0 keeps them all; Noisy Student used 0.3 on ImageNet).
        balance: equal pseudo-labelled images per class: classes with more keep their most
            confident images, classes with fewer are repeated (as Noisy Student did).
        per_class: images per class when balancing (None: the median over the classes).
        noise_policy: train the students with the search's policy (False: only its base
            crop and flip, an ablation of the policy's part in the noise).
        student: size and the other noise of the students.
        seed: seed of the trainings (None: the search's).
        priority: higher is served first by workers.
    """

    model_config = _STRICT

    iterations: int = Field(default=2, ge=1, le=10)
    pseudo_labels: Literal["hard", "soft"] = "soft"
    confidence_threshold: float = Field(default=0.3, ge=0.0, lt=1.0)
    balance: bool = True
    per_class: int | None = Field(default=None, ge=1, le=10_000_000)
    noise_policy: bool = True
    student: StudentOptions = Field(default_factory=StudentOptions)
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    priority: int = Field(default=0, ge=-100, le=100)


class SelfTrainingJob(BaseModel):
    """A job as stored in its study: the search it starts from and the options.

    Attributes:
        search_id: the finished search.
        search: its spec (dataset, splits, final recipe, seed).
        policy: its served policy (Policy JSON): the teacher's augmentation and the
            students' noise.
        unlabelled: the unlabelled images.
        options: the user's options.
    """

    model_config = _STRICT

    search_id: str
    search: SearchSpec
    policy: dict[str, Any]
    unlabelled: UnlabelledSpec
    options: SelfTrainingOptions = Field(default_factory=SelfTrainingOptions)

    @model_validator(mode="after")
    def _check(self) -> SelfTrainingJob:
        from ops.policy import load_policy

        load_policy(self.policy)
        self.student_recipe()  # a drop_path on airbench is refused here, at launch
        return self

    @property
    def seed(self) -> int:
        """Seed of every training of the job."""
        return self.search.seed if self.options.seed is None else self.options.seed

    def teacher_recipe(self) -> TrainerRecipe:
        """The teacher's recipe: the search's final recipe."""
        return self.search.final

    def student_recipe(self) -> TrainerRecipe:
        """The teacher's recipe with the student's size, noise and length."""
        student = self.options.student
        update: dict[str, Any] = {"drop_path": student.drop_path}
        for name in ("arch", "width", "dropout"):
            value = getattr(student, name)
            if value is not None:
                update[name] = value
        base = self.teacher_recipe().model_dump()
        try:
            recipe = TrainerRecipe.model_validate({**base, **update})
        except ValueError as exc:
            raise ValueError(f"the student's recipe is invalid: {exc}") from exc
        return recipe.scaled(student.length_factor) if student.length_factor > 1 else recipe
