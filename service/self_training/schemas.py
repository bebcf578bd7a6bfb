"""Request and response models of the unlabelled-images and self-training APIs."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from search.training.recipe import Arch

_MAX_ID = 2**31 - 1


class UnlabelledCreate(BaseModel):
    """Attach a server folder of unlabelled images to a dataset (uploads use the multipart
    route). Any layout is read: every image file below the folder counts."""

    model_config = ConfigDict(extra="forbid")
    dataset_id: int = Field(ge=1, le=_MAX_ID)
    path: str = Field(min_length=1, max_length=4096)
    name: str | None = Field(default=None, min_length=1, max_length=200)


class UnlabelledRead(BaseModel):
    """Unlabelled images attached to a dataset, decoded to its shape."""

    model_config = ConfigDict(from_attributes=True)
    id: int
    dataset_id: int
    owner_id: int
    name: str
    source: str
    num_images: int
    content_hash: str
    created_at: datetime


class StudentCreate(BaseModel):
    """The students' size and noise (see `search.self_training.StudentOptions`)."""

    model_config = ConfigDict(extra="forbid")
    arch: Arch | None = None  # the recipe's own list (torch-free), timm architectures included
    width: float | None = Field(default=None, ge=0.0625, le=4.0)
    dropout: float | None = Field(default=None, ge=0.0, lt=1.0)
    drop_path: float = Field(default=0.0, ge=0.0, lt=1.0)
    length_factor: int = Field(default=1, ge=1, le=10)


class SelfTrainingCreate(BaseModel):
    """Launch self-training on a completed search (see `search.self_training`).

    The teacher is trained with the search's policy and final recipe on the labelled training
    part; each student on the labelled images plus the unlabelled ones its teacher labelled,
    with the noise chosen here. The fields mirror `search.self_training.SelfTrainingOptions`,
    which validates them again at launch; they are repeated here so that the API documents
    them without importing torch.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    unlabelled_id: int = Field(ge=1, le=_MAX_ID)
    iterations: int = Field(default=2, ge=1, le=10)
    pseudo_labels: Literal["hard", "soft"] = "soft"
    confidence_threshold: float = Field(default=0.3, ge=0.0, lt=1.0)
    balance: bool = True
    per_class: int | None = Field(default=None, ge=1, le=10_000_000)
    noise_policy: bool = True
    student: StudentCreate = Field(default_factory=StudentCreate)
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    priority: int = Field(default=0, ge=-100, le=100)


class StepRead(BaseModel):
    """One step: the teacher (step 0) or a student."""

    step: int
    role: str
    state: str
    val_accuracy: float | None = None
    test_accuracy: float | None = None
    pseudo_labels: dict[str, Any] | None = None
    epochs: list[float] = Field(default_factory=list)
    attempts: int = 1
    error: str | None = None


class SelfTrainingRead(BaseModel):
    """A self-training job: its state, every step's validation accuracy, the best student."""

    model_config = ConfigDict(from_attributes=True)
    id: int
    search_id: int
    unlabelled_id: int
    owner_id: int
    options: dict[str, Any]
    state: str
    steps: list[StepRead]
    trainings: int
    best_step: int | None
    best_value: float | None
    teacher_value: float | None
    error: str | None
    created_at: datetime
    finished_at: datetime | None


class SelfTrainingCheckpointRead(BaseModel):
    """The best student's checkpoint: its model card and checksum."""

    model_config = ConfigDict(from_attributes=True)
    id: int
    search_id: int
    best_step: int | None
    sha256: str | None
    card: dict[str, Any]
