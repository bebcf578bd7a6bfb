"""The trial-training recipe: every knob of the trainer, bounded and validated."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Arch = Literal["resnet8", "resnet20", "wrn-16-2", "wrn-28-2", "airbench"]


class TrainerRecipe(BaseModel):
    """How one trial trains its proxy model.

    Attributes:
        arch: proxy architecture (see :data:`search.models.ARCHS`).
        width: width multiplier of ``airbench``.
        dropout: dropout rate of the model.
        epochs: training epochs.
        batch_size: training batch size.
        optimizer: ``sgd`` (Nesterov, momentum 0.9) or ``adamw``. Weight decay is decoupled for
            both: each step multiplies the weights by ``1 - lr * weight_decay``. With SGD this
            is about ten times weaker than the same coupled value under momentum 0.9, so the
            classic CIFAR 5e-4 corresponds to 5e-3 here. Norm and bias parameters are not decayed.
        lr: peak learning rate.
        weight_decay: decoupled weight decay.
        schedule: ``cosine`` (to zero), ``onecycle`` (linear up then linear down to zero) or
            ``constant``, each after ``warmup_epochs`` of linear warm-up (``onecycle`` with no
            warm-up given rises over the first quarter of training).
        warmup_epochs: linear warm-up length, may be fractional.
        label_smoothing: used unless the policy's ``mix.label_smoothing`` is set, which wins.
        grad_clip_norm: clip the global gradient norm to this value.
        agc_clip: adaptive gradient clipping factor (unit-wise, as in NFNets), classifier excluded.
        amp: mixed precision on CUDA (``auto`` picks bf16 where supported, else fp16 with a
            gradient scaler); ignored on CPU.
        channels_last: train in channels-last memory format.
        early_stopping_patience: stop after this many epochs without a better val accuracy.
        eval_batch_size: batch size of validation passes.
        train_subset: train on a seeded stratified subset of this many images.
        restore_best: end with the weights of the best validation epoch (the reported
            ``val_accuracy`` is then the best one); otherwise the last epoch's weights and
            accuracy.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    arch: Arch = "resnet8"
    width: float = Field(default=1.0, ge=0.0625, le=4.0)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    epochs: int = Field(default=10, ge=1, le=500)
    batch_size: int = Field(default=128, ge=2, le=8192)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(default=0.1, gt=0.0, le=10.0)
    weight_decay: float = Field(default=5e-3, ge=0.0, le=1.0)
    schedule: Literal["cosine", "onecycle", "constant"] = "cosine"
    warmup_epochs: float = Field(default=0.0, ge=0.0, le=100.0)
    label_smoothing: float = Field(default=0.0, ge=0.0, le=0.5)
    grad_clip_norm: float | None = Field(default=None, gt=0.0, le=1e4)
    agc_clip: float | None = Field(default=None, gt=0.0, le=1.0)
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"
    channels_last: bool = False
    early_stopping_patience: int | None = Field(default=None, ge=1, le=500)
    eval_batch_size: int = Field(default=1024, ge=1, le=65536)
    train_subset: int | None = Field(default=None, ge=2)
    restore_best: bool = True

    @model_validator(mode="after")
    def _check_warmup(self) -> TrainerRecipe:
        if self.warmup_epochs >= self.epochs:
            raise ValueError(
                f"warmup_epochs ({self.warmup_epochs}) must be shorter than epochs ({self.epochs})"
            )
        return self
