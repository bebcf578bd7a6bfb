"""The trial-training recipe: every knob of the trainer, bounded and validated.

Batch size and epochs default to ``None``: they are then derived from the training-set size
(`TrainerRecipe.for_size`), so that a recipe converges on 300 images as on 30,000. A proxy
that stops before it converges ranks policies by how fast they learn, which favours weak
augmentation; a budget in optimizer steps instead of epochs keeps every data set size in the
regime where strong augmentation can show its worth.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Our proxies (`search.models.ARCHS`) and timm ResNets (`search.models.TIMM_ARCHS`), whose
#: checkpoints load with ``timm.create_model`` alone.
Arch = Literal[
    "resnet8",
    "resnet20",
    "wrn-16-2",
    "wrn-28-2",
    "airbench",
    "timm:resnet10t",
    "timm:resnet18",
    "timm:resnet18d",
    "timm:resnet34",
    "timm:resnet50",
    "timm:resnet50d",
]

#: Default optimizer steps of a recipe whose epochs are derived from the data.
DEFAULT_STEPS = 500
#: Bounds of the derived batch size: about ``n / STEPS_PER_EPOCH`` rounded down to a power of 2.
MIN_AUTO_BATCH, MAX_AUTO_BATCH = 16, 256
STEPS_PER_EPOCH = 8
#: Default cap of a derived batch size on the CPU (``max_auto_batch``). A CPU proxy costs what
#: it sees, so its budget is steps of a small batch: on ``fonts`` (1,040 training images), 500
#: steps of 64 ranked seven policies as 500 steps of 128 did but for one close pair (Kendall
#: tau 0.90) in 30 s instead of 53 s (`benchmarks.proxy_batch`); fewer steps do not (300 steps
#: of 64 on house numbers held RandAugment(2, 9) at chance). A final recipe derived by the
#: search keeps `MAX_AUTO_BATCH`: the model a user keeps trains on batches that follow the data.
PROXY_MAX_AUTO_BATCH = 64
#: Share of derived epochs spent in linear warm-up when the recipe gives none. Without it the
#: lr of 0.1 held a strong policy (RandAugment(2, 9) on house numbers) at chance for the whole
#: proxy (0.37 after 40 epochs); with 2 epochs of warm-up it reached 0.99.
AUTO_WARMUP_SHARE = 0.05
#: Bounds of the derived number of epochs.
MIN_AUTO_EPOCHS, MAX_AUTO_EPOCHS = 4, 200
#: Validation passes of a search's proxy training when its recipe does not say (`val_every`).
PROXY_VALIDATIONS = 8


def auto_batch_size(n: int, cap: int = MAX_AUTO_BATCH) -> int:
    """The batch size for ``n`` training images: ~8 steps per epoch, a power of 2 in
    [16, ``cap``] (``cap`` itself when it is not a power of 2 and the data asks for more)."""
    target = max(1, n // STEPS_PER_EPOCH)
    power = 2 ** math.floor(math.log2(target))
    return max(MIN_AUTO_BATCH, min(cap, power))


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimizer steps of one epoch (a last batch of one image is dropped: batch norm)."""
    return max(1, n // batch_size + (1 if n % batch_size > 1 else 0))


class TrainerRecipe(BaseModel):
    """How one trial trains its proxy model.

    Attributes:
        arch: model architecture (see :data:`search.models.ARCHS` and ``TIMM_ARCHS``). The
            default ``airbench`` ends in a global max-pool; the CIFAR ResNets' global average
            pool loses where a feature is, and on crops with distractors (a house number's
            neighbouring digits) they stayed at chance for 500 steps where airbench reached
            0.92 (docs/search.md). ``timm:<name>`` is timm's ResNet of that name (small-image
            variant chosen by the image size), the default of a search's final recipe.
        width: width multiplier of ``airbench`` and the ``timm:`` ResNets (0.25: a fast CPU
            proxy; raise it on a GPU).
        dropout: dropout rate of the model.
        drop_path: stochastic depth rate of the last residual block (ResNets and WRNs only;
            see `search.models.set_stochastic_depth`).
        epochs: training epochs; None derives them from ``steps`` and the training-set size.
        batch_size: training batch size; None derives it from the training-set size
            (`auto_batch_size`: a power of 2 in [16, ``max_auto_batch``] giving ~8 steps per
            epoch).
        max_auto_batch: cap of a derived batch size; None (default) means
            `PROXY_MAX_AUTO_BATCH` (64) on the CPU, where a proxy's cost is the images it sees
            and ranking needs steps rather than big batches, and `MAX_AUTO_BATCH` (256) on an
            accelerator, where a step of 256 small images costs about what a step of 64 does.
            A search's default final recipe has `MAX_AUTO_BATCH`.
        steps: optimizer steps aimed at when ``epochs`` is None (default `DEFAULT_STEPS`);
            the epochs are ``ceil(steps / steps_per_epoch)`` within [4, 200].
        optimizer: ``sgd`` (Nesterov, momentum 0.9) or ``adamw``. Weight decay is decoupled for
            both: each step multiplies the weights by ``1 - lr * weight_decay``. With SGD this
            is about ten times weaker than the same coupled value under momentum 0.9, so the
            classic CIFAR 5e-4 corresponds to 5e-3 here. Norm and bias parameters are not decayed.
        lr: peak learning rate.
        weight_decay: decoupled weight decay.
        schedule: ``cosine`` (to zero), ``onecycle`` (linear up then linear down to zero) or
            ``constant``, each after ``warmup_epochs`` of linear warm-up (``onecycle`` with no
            warm-up given rises over the first quarter of training).
        warmup_epochs: linear warm-up length, may be fractional; None (default) means
            `AUTO_WARMUP_SHARE` of the epochs when they are derived, else none.
        label_smoothing: used unless the policy's ``mix.label_smoothing`` is set, which wins.
        grad_clip_norm: clip the global gradient norm to this value.
        agc_clip: adaptive gradient clipping factor (unit-wise, as in NFNets), classifier excluded.
        amp: mixed precision on CUDA (``auto`` picks bf16 where supported, else fp16 with a
            gradient scaler); ignored on CPU.
        channels_last: train and validate in channels-last memory format (the default:
            measured on one CPU thread, 0.25-width airbench and timm ResNets trained 7-23%
            faster per step and validated 1.7-3.6x faster than in the contiguous format).
        early_stopping_patience: stop after this many epochs without a better val accuracy.
        eval_batch_size: batch size of validation passes.
        train_subset: train on a seeded stratified subset of this many images.
        restore_best: end with the weights of the best validation epoch (higher accuracy,
            then lower loss; the reported ``val_accuracy`` is then the best one); otherwise
            the last epoch's weights and accuracy.
        val_every: epochs between two validation passes (the last epoch always validates);
            None validates after every epoch. A search's proxy trainings that leave it unset
            validate about `PROXY_VALIDATIONS` times (`with_proxy_validation`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    arch: Arch = "airbench"
    width: float = Field(default=0.25, ge=0.0625, le=4.0)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    drop_path: float = Field(default=0.0, ge=0.0, lt=1.0)
    epochs: int | None = Field(default=None, ge=1, le=500)
    batch_size: int | None = Field(default=None, ge=2, le=8192)
    max_auto_batch: int | None = Field(default=None, ge=MIN_AUTO_BATCH, le=8192)
    steps: int | None = Field(default=None, ge=10, le=1_000_000)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(default=0.1, gt=0.0, le=10.0)
    weight_decay: float = Field(default=5e-3, ge=0.0, le=1.0)
    schedule: Literal["cosine", "onecycle", "constant"] = "cosine"
    warmup_epochs: float | None = Field(default=None, ge=0.0, le=100.0)
    label_smoothing: float = Field(default=0.1, ge=0.0, le=0.5)
    grad_clip_norm: float | None = Field(default=None, gt=0.0, le=1e4)
    agc_clip: float | None = Field(default=None, gt=0.0, le=1.0)
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"
    channels_last: bool = True
    early_stopping_patience: int | None = Field(default=None, ge=1, le=500)
    eval_batch_size: int = Field(default=1024, ge=1, le=65536)
    train_subset: int | None = Field(default=None, ge=2)
    restore_best: bool = True
    val_every: int | None = Field(default=None, ge=1, le=500)

    @model_validator(mode="after")
    def _check_warmup(self) -> TrainerRecipe:
        if self.drop_path > 0 and self.arch == "airbench":
            raise ValueError("drop_path needs a model with residual blocks, not 'airbench'")
        if self.epochs is not None and self.steps is not None:
            raise ValueError("give epochs or steps, not both (steps sets the epochs)")
        warmup = self.warmup_epochs
        if self.epochs is not None and warmup is not None and warmup >= self.epochs:
            raise ValueError(
                f"warmup_epochs ({warmup}) must be shorter than epochs ({self.epochs})"
            )
        return self

    @property
    def resolved(self) -> bool:
        """Whether batch size and epochs are both fixed."""
        return self.epochs is not None and self.batch_size is not None

    def for_size(self, n: int, *, accelerator: bool = False) -> TrainerRecipe:
        """This recipe with batch size and epochs fixed for ``n`` training images.

        Explicit values are kept; a derived number of epochs is at least one more than the
        warm-up. ``n`` counts the images before ``train_subset`` is taken; ``accelerator``
        says whether it trains on a GPU (the default cap of a derived batch, see
        ``max_auto_batch``).
        """
        if self.resolved:
            if self.warmup_epochs is None:
                return self.model_copy(update={"warmup_epochs": 0.0})
            return self
        if self.train_subset is not None:
            n = min(n, self.train_subset)
        batch = self.batch_size or auto_batch_size(n, self.batch_cap(accelerator=accelerator))
        epochs = self.epochs
        warmup = self.warmup_epochs
        if epochs is None:
            per_epoch = steps_per_epoch(n, batch)
            wanted = math.ceil((self.steps or DEFAULT_STEPS) / per_epoch)
            epochs = max(MIN_AUTO_EPOCHS, min(MAX_AUTO_EPOCHS, wanted))
            if warmup is None:
                warmup = round(AUTO_WARMUP_SHARE * epochs, 2)
            epochs = max(epochs, math.floor(warmup) + 1)
        update = {
            "batch_size": batch,
            "epochs": epochs,
            "steps": None,
            "warmup_epochs": warmup or 0.0,
        }
        return self.model_copy(update=update)

    def batch_cap(self, *, accelerator: bool = False) -> int:
        """The largest batch size `for_size` may derive (see ``max_auto_batch``)."""
        if self.max_auto_batch is not None:
            return self.max_auto_batch
        return MAX_AUTO_BATCH if accelerator else PROXY_MAX_AUTO_BATCH

    def with_proxy_validation(self) -> TrainerRecipe:
        """This resolved recipe validating `PROXY_VALIDATIONS` times, unless ``val_every`` is set.

        A proxy training is judged on its last validations; one pass over the validation part
        after each of its ~40 short epochs was 11-14% of its time (docs/search.md). The
        final trainings keep every epoch: their best epoch's weights are what is served.
        """
        if self.val_every is not None or self.epochs is None:
            return self
        return self.model_copy(
            update={"val_every": max(1, math.ceil(self.epochs / PROXY_VALIDATIONS))}
        )

    def validates_after(self, epoch: int) -> bool:
        """Whether epoch ``epoch`` (from 1) of this resolved recipe ends with a validation."""
        every = self.val_every or 1
        return epoch % every == 0 or epoch == self.epochs

    def scaled(self, factor: int) -> TrainerRecipe:
        """This recipe trained ``factor`` times longer (in epochs, or in steps when derived)."""
        if self.epochs is not None:
            return self.model_copy(update={"epochs": min(500, self.epochs * factor)})
        steps = min(1_000_000, (self.steps or DEFAULT_STEPS) * factor)
        return self.model_copy(update={"steps": steps})
