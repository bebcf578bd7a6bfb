"""The trial trainer: data on the device, batched augmentation, per-epoch validation."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ops.apply import BatchAugmenter
from ops.mix import mix_batch
from ops.policy import Policy
from search.datasets import ImageDataset, stratified_subset
from search.models import build_model
from search.training import optim
from search.training.evaluation import amp_dtype, autocast, evaluate, normaliser
from search.training.recipe import TrainerRecipe, steps_per_epoch

EpochCallback = Callable[[int, dict[str, float]], None]


@dataclass
class TrainResult:
    """What a training returns.

    Attributes:
        metrics: ``val_accuracy`` and ``val_loss`` (of the best epoch when the recipe restores
            the best weights, else of the last), ``final_val_accuracy``, ``train_loss`` (last
            epoch), ``best_epoch``, ``epochs_run``, ``seconds`` (wall time),
            ``images_per_second`` (training images per second of training-step time) and
            ``stop_reason`` (``completed``, ``early_stopping`` or ``cancelled``).
        history: one dict per epoch (``epoch``, ``lr``, ``train_loss``, ``val_accuracy``,
            ``val_loss``, ``seconds``).
        state_dict: the returned weights, on the CPU; they reproduce ``val_accuracy``.
        model: the model holding those weights, on the training device, in eval mode.
        mean: per-channel normalisation mean the model expects.
        std: per-channel normalisation std the model expects.
    """

    metrics: dict[str, Any]
    history: list[dict[str, float]]
    state_dict: dict[str, torch.Tensor]
    model: nn.Module
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)


@contextlib.contextmanager
def _seeded(device: torch.device, seed: int) -> Iterator[None]:
    """Seed model init and dropout without leaking into the caller's global RNG state.

    On the CPU, deterministic algorithms are switched on for the duration, so a seed gives
    bit-identical weights.
    """
    cuda = [device.index or 0] if device.type == "cuda" else []
    previous = torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        if device.type == "cpu":
            torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(previous)


def _sizes(recipe: TrainerRecipe) -> tuple[int, int]:
    """Batch size and epochs of a resolved recipe (see `TrainerRecipe.for_size`)."""
    if recipe.batch_size is None or recipe.epochs is None:
        raise ValueError("the recipe's batch size and epochs must be resolved for the data")
    return recipe.batch_size, recipe.epochs


def _check_sets(train_set: ImageDataset, val_set: ImageDataset) -> None:
    if len(train_set) < 2 or len(val_set) < 1:
        raise ValueError(
            f"need >= 2 training and >= 1 validation images, got {len(train_set)}, {len(val_set)}"
        )
    if train_set.classes != val_set.classes:
        raise ValueError("training and validation sets have different classes")
    if train_set.images.shape[1:] != val_set.images.shape[1:]:
        raise ValueError(
            f"image shapes differ: {tuple(train_set.images.shape[1:])} vs "
            f"{tuple(val_set.images.shape[1:])}"
        )


def _check_soft_targets(
    targets: torch.Tensor, train_set: ImageDataset, recipe: TrainerRecipe
) -> None:
    if targets.shape != (len(train_set), train_set.num_classes):
        raise ValueError(
            f"soft_targets must be ({len(train_set)}, {train_set.num_classes}), "
            f"got {tuple(targets.shape)}"
        )
    if recipe.train_subset is not None:
        raise ValueError("soft_targets cannot be combined with recipe.train_subset")


class _Trial:
    """One training run: model, optimiser, on-device data and the random streams."""

    def __init__(
        self,
        recipe: TrainerRecipe,
        policy: Policy,
        train_set: ImageDataset,
        device: torch.device,
        seed: int,
        soft_targets: torch.Tensor | None = None,
    ) -> None:
        self.recipe, self.device, self.train_set = recipe, device, train_set
        self.num_classes = train_set.num_classes
        model = build_model(
            recipe.arch,
            self.num_classes,
            train_set.channels,
            train_set.image_size,
            width=recipe.width,
            dropout=recipe.dropout,
            drop_path=recipe.drop_path,
        ).to(device)
        self.memory_format = (
            torch.channels_last if recipe.channels_last else torch.contiguous_format
        )
        self.model = model.to(memory_format=self.memory_format)
        self.optimizer = optim.build_optimizer(self.model, recipe)
        self.agc_params = optim.agc_parameters(self.model) if recipe.agc_clip else []
        self.amp = amp_dtype(recipe.amp, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp == torch.float16)
        self.augment = BatchAugmenter(policy)
        smoothing = policy.mix.label_smoothing or recipe.label_smoothing
        self.mix = policy.mix.model_copy(update={"label_smoothing": smoothing})
        self.mixing = bool(self.mix.mixup_alpha or self.mix.cutmix_alpha or self.mix.cutout)
        self.normalise = normaliser(train_set.mean, train_set.std, device)
        # Separate streams: shuffling on the CPU (identical on every device), augmentation
        # and mixing on the device where the batches live.
        self.shuffle_gen = torch.Generator().manual_seed(seed)
        self.aug_gen = torch.Generator(device=device).manual_seed(seed + 1)
        self.images = train_set.images.to(device)
        self.labels = train_set.labels.to(device)
        self.soft = None if soft_targets is None else soft_targets.float().to(device)
        self.batch_size, self.epochs = _sizes(recipe)
        # A last batch of one sample would break batch norm: it is dropped.
        self.steps_per_epoch = steps_per_epoch(len(train_set), self.batch_size)
        self.total_steps = self.steps_per_epoch * self.epochs
        self.step_count = 0

    def _loss(
        self, images: torch.Tensor, labels: torch.Tensor, soft: torch.Tensor | None
    ) -> torch.Tensor:
        x = self.normalise(self.augment(images, self.aug_gen))
        targets = soft
        if soft is not None:  # label smoothing folded into the given soft targets
            smoothing = self.mix.label_smoothing
            targets = soft * (1.0 - smoothing) + smoothing / self.num_classes
        if self.mixing:
            x, targets = mix_batch(
                x, labels, self.num_classes, self.mix, self.aug_gen, targets=targets
            )
        x = x.contiguous(memory_format=self.memory_format)
        with autocast(self.device, self.amp):
            logits = self.model(x).float()
        if targets is not None:
            return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
        return F.cross_entropy(logits, labels, label_smoothing=self.mix.label_smoothing)

    def _step(
        self, images: torch.Tensor, labels: torch.Tensor, soft: torch.Tensor | None = None
    ) -> torch.Tensor:
        factor = optim.lr_factor(
            self.recipe, self.step_count, self.total_steps, self.steps_per_epoch
        )
        optim.set_lr(self.optimizer, self.recipe.lr * factor)
        loss = self._loss(images, labels, soft)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.recipe.grad_clip_norm or self.recipe.agc_clip:
            self.scaler.unscale_(self.optimizer)
        if self.recipe.agc_clip:
            optim.adaptive_clip(self.agc_params, self.recipe.agc_clip)
        if self.recipe.grad_clip_norm:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.recipe.grad_clip_norm)
        optim.apply_decoupled_decay(self.optimizer)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step_count += 1
        return loss.detach()

    def validate(self, val_set: ImageDataset) -> dict[str, float]:
        """Accuracy and loss of the model on ``val_set``, normalised like the training set."""
        return evaluate(
            self.model,
            val_set,
            self.device,
            batch_size=self.recipe.eval_batch_size,
            amp=self.recipe.amp,
            mean=self.train_set.mean,
            std=self.train_set.std,
        )

    def train_epoch(self) -> tuple[float, int, float]:
        """One pass over the shuffled data: (mean loss, images seen, seconds)."""
        self.model.train()
        start = time.perf_counter()
        order = torch.randperm(len(self.train_set), generator=self.shuffle_gen).to(self.device)
        bs = self.batch_size
        total = torch.zeros((), device=self.device)
        seen = 0
        for i in range(self.steps_per_epoch):
            idx = order[i * bs : (i + 1) * bs]
            soft = None if self.soft is None else self.soft[idx]
            total += self._step(self.images[idx], self.labels[idx], soft) * idx.numel()
            seen += idx.numel()
        mean_loss = float(total) / max(1, seen)
        return mean_loss, seen, time.perf_counter() - start


@dataclass
class _Progress:
    """Bookkeeping of the epochs run so far."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_accuracy: float = -1.0
    best_loss: float = math.inf
    best_epoch: int = 0
    accuracy_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    train_images: int = 0
    train_seconds: float = 0.0
    epochs_trained: int = 0
    stop_reason: str = "completed"

    def record(self, row: dict[str, float], model: nn.Module, keep_state: bool) -> None:
        """Keep ``row`` and, when it is the best validation so far, the model's weights.

        Best is the higher accuracy and, at equal accuracy, the lower loss: on a small or easy
        validation part the accuracy saturates (1.000 from an early epoch on), and keeping the
        first epoch that reached it would serve weights trained a fraction of the schedule and
        compare contenders by the loss of an arbitrary epoch.
        """
        self.history.append(row)
        accuracy, loss, epoch = row["val_accuracy"], row["val_loss"], int(row["epoch"])
        if accuracy > self.best_accuracy:
            self.accuracy_epoch = epoch
        if accuracy > self.best_accuracy or (
            accuracy == self.best_accuracy and loss < self.best_loss
        ):
            self.best_accuracy, self.best_loss, self.best_epoch = accuracy, loss, epoch
            if keep_state:
                self.best_state = copy.deepcopy(model.state_dict())

    def patience_spent(self, patience: int | None) -> bool:
        """Whether ``patience`` epochs (not validations) went by without a better accuracy."""
        return patience is not None and self.epochs_trained - self.accuracy_epoch >= patience


def _fit(
    trial: _Trial,
    val_set: ImageDataset,
    on_epoch: EpochCallback | None,
    should_stop: Callable[[], bool] | None,
) -> _Progress:
    recipe, progress = trial.recipe, _Progress()
    for epoch in range(1, trial.epochs + 1):
        if should_stop is not None and should_stop():
            progress.stop_reason = "cancelled"
            break
        train_loss, seen, seconds = trial.train_epoch()
        progress.train_images += seen
        progress.train_seconds += seconds
        progress.epochs_trained = epoch
        diverged = not math.isfinite(train_loss)
        if not (diverged or recipe.validates_after(epoch)):
            continue
        val = trial.validate(val_set)
        row = {
            "epoch": float(epoch),
            "lr": trial.optimizer.param_groups[0]["lr"],
            "train_loss": train_loss,
            "val_accuracy": val["accuracy"],
            "val_loss": val["loss"],
            "seconds": seconds,
        }
        progress.record(row, trial.model, recipe.restore_best)
        if on_epoch is not None:
            on_epoch(epoch, dict(row))  # exceptions (e.g. optuna.TrialPruned) propagate
        if diverged:
            progress.stop_reason = "diverged"
            break
        if progress.patience_spent(recipe.early_stopping_patience):
            progress.stop_reason = "early_stopping"
            break
    return progress


def _last_validation(progress: _Progress) -> dict[str, float] | None:
    """The last epoch's validation when the model ends with that epoch's weights.

    Evaluation is deterministic, so validating those weights again would give the same
    figures; on a short proxy training one validation pass is a few percent of its time.
    """
    if not progress.history:
        return None
    last = progress.history[-1]
    kept = progress.best_epoch if progress.best_state is not None else progress.epochs_trained
    if int(last["epoch"]) != kept:
        return None
    return {"accuracy": last["val_accuracy"], "loss": last["val_loss"]}


def _metrics(progress: _Progress, final: dict[str, float], seconds: float) -> dict[str, Any]:
    last = progress.history[-1] if progress.history else {}
    return {
        "val_accuracy": final["accuracy"],
        "val_loss": final["loss"],
        "final_val_accuracy": last.get("val_accuracy", final["accuracy"]),
        "train_loss": last.get("train_loss", math.nan),
        "best_epoch": progress.best_epoch,
        "epochs_run": progress.epochs_trained,
        "seconds": seconds,
        "images_per_second": progress.train_images / max(progress.train_seconds, 1e-9),
        "stop_reason": progress.stop_reason,
    }


def train(
    recipe: TrainerRecipe,
    policy: Policy,
    train_set: ImageDataset,
    val_set: ImageDataset,
    *,
    device: str | torch.device,
    seed: int,
    on_epoch: EpochCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    soft_targets: torch.Tensor | None = None,
) -> TrainResult:
    """Train the recipe's proxy model with the policy's augmentation and report per epoch.

    Each batch is augmented on the device with :class:`ops.apply.BatchAugmenter`, normalised
    with the training set's mean/std, mixed with :func:`ops.mix.mix_batch` when the policy
    asks for MixUp/CutMix/Cutout, and trained with (soft-target) cross-entropy.

    Args:
        recipe: the training recipe; batch size and epochs left unset are derived from the
            training-set size (`TrainerRecipe.for_size`).
        policy: the augmentation policy (kind ``none`` still applies its base crop/flips).
        train_set: training images.
        val_set: validation images (same classes and image shape).
        device: ``cpu``, ``cuda``, ``cuda:1``...
        seed: seeds model init, shuffling, augmentation and dropout; on the CPU the same seed
            gives bit-identical weights.
        on_epoch: called as ``on_epoch(epoch, row)`` after each validation (epoch counts
            from 1; with ``recipe.val_every`` only the validated epochs call it); its
            exceptions propagate, which is how Optuna pruning stops a trial.
        should_stop: checked before each epoch; True ends training cleanly with
            ``stop_reason`` ``cancelled``.
        soft_targets: (N, classes) target distributions of the training images, used instead
            of their labels (soft pseudo-labels of self-training; label smoothing still
            applies); incompatible with ``recipe.train_subset``.

    Raises:
        ValueError: incompatible or too small datasets.
    """
    dev = torch.device(device)
    _check_sets(train_set, val_set)
    if soft_targets is not None:
        _check_soft_targets(soft_targets, train_set, recipe)
    if recipe.train_subset is not None and recipe.train_subset < len(train_set):
        train_set = stratified_subset(train_set, recipe.train_subset, seed)
    recipe = recipe.for_size(len(train_set), accelerator=dev.type != "cpu")
    started = time.perf_counter()
    # Validation images move to the device once, not at every epoch.
    val_set = dataclasses.replace(
        val_set, images=val_set.images.to(dev), labels=val_set.labels.to(dev)
    )
    with _seeded(dev, seed):
        trial = _Trial(recipe, policy, train_set, dev, seed, soft_targets)
        progress = _fit(trial, val_set, on_epoch, should_stop)
        if progress.best_state is not None:
            trial.model.load_state_dict(progress.best_state)
        final = _last_validation(progress)
        if final is None:  # the weights kept are not the last epoch's (or none was validated)
            final = trial.validate(val_set)
    trial.model.eval()
    metrics = _metrics(progress, final, time.perf_counter() - started)
    # Contiguous (channels-last weights are not): safetensors stores plain layouts only.
    state = {
        k: v.detach().to("cpu", copy=True).contiguous() for k, v in trial.model.state_dict().items()
    }
    return TrainResult(metrics, progress.history, state, trial.model, train_set.mean, train_set.std)
