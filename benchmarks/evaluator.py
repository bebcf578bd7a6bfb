"""Independent evaluation of a policy: a training the search never used, scored on a test split.

The search ranks policies with short trainings of its proxy models (:mod:`search.models`) on a
subset of the training part. Judging the policy it finds with the same models and recipe would
reward whatever suits that proxy, so the evaluation here differs in every respect the search
could overfit to:

* the model, :class:`SmallVGG`: a plain VGG-style network (3x3 conv, batch norm, ReLU, max-pool;
  global average pooling), none of the proxies' residual or airbench blocks;
* the recipe, :class:`EvalRecipe`: SGD-Nesterov (lr 0.1, batches of 64) with coupled weight
  decay, one epoch of linear warm-up then a cosine decay to zero, label smoothing 0.1,
  `DEFAULT_EPOCHS` (60) epochs on the whole training part given, no early stopping and no
  best-epoch selection (nothing is chosen by looking at the test split).

The policy is applied exactly as the service trains with it: per sample with
:class:`ops.apply.BatchAugmenter` (its ``base`` crop/flips first, then its ops) on the uint8
batch, then normalisation with the training set's statistics, then :func:`ops.mix.mix_batch`
when the policy mixes (MixUp, CutMix, Cutout; the policy's label smoothing wins over the
recipe's, as in the trainer).

A seed fixes the weights' initialisation, the shuffling and every augmentation draw; on the
CPU deterministic algorithms are switched on for the run, so one seed gives one accuracy.

Throughput (measured over the 72 calibration trainings of ``benchmarks/fidelity_calibration.md``:
1 torch thread, 32x32, batches of 64, channels-last, augmentation included, on one core of an
AMD EPYC (Zen 4) shared with other jobs): 1,750-2,450 training images/s, so 60 epochs of 1,200
to 1,560 images take 31-54 s.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ops.apply import BatchAugmenter
from ops.mix import mix_batch
from ops.policy import Policy
from search.datasets import ImageDataset

#: Channels of each stage of :class:`SmallVGG`; every stage but the last halves the side.
DEFAULT_WIDTHS = (16, 32, 64, 128)
#: Epochs of an evaluation training. At 40 the strong presets still underfit the benchmark sets
#: of ~1,200 images (house-numbers, seed 0: TrivialAugment 97.3% at 40 epochs, 98.8% at 60,
#: 99.4% at 80, while no augmentation stays at 96.4-96.8%): a short evaluation favours weak
#: augmentation, the bias this evaluation exists to avoid. 60 keeps a training under a minute.
DEFAULT_EPOCHS = 60


class SmallVGG(nn.Module):
    """A VGG-style CNN for small images: conv3x3-BN-ReLU stages, max-pool between them.

    Args:
        in_channels: image channels.
        num_classes: outputs.
        widths: channels per stage; each stage but the last ends with a 2x2 max-pool, so the
            input side must be at least ``2 ** (len(widths) - 1)``.
    """

    def __init__(
        self, in_channels: int, num_classes: int, widths: tuple[int, ...] = DEFAULT_WIDTHS
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels
        for i, width in enumerate(widths):
            layers += [
                nn.Conv2d(c_in, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            c_in = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))


@dataclass(frozen=True)
class EvalRecipe:
    """How the evaluation model trains (the epochs are an argument of the functions).

    Attributes:
        batch_size: training batch size (a last batch of one image is dropped: batch norm).
        lr: peak learning rate of SGD-Nesterov (momentum 0.9).
        weight_decay: coupled L2 on convolution and linear weights (not on norms or biases).
        warmup_epochs: linear warm-up before the cosine decay to zero (per step).
        label_smoothing: used unless the policy's ``mix.label_smoothing`` is set.
        widths: channels of the :class:`SmallVGG` stages.
        eval_batch_size: batch size of the test pass.
    """

    batch_size: int = 64
    lr: float = 0.1
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    widths: tuple[int, ...] = DEFAULT_WIDTHS
    eval_batch_size: int = 500


@dataclass(frozen=True)
class EvalRun:
    """One evaluation training.

    Attributes:
        seed: the seed it ran with.
        test_accuracy: accuracy of the final weights on the test split.
        train_loss: mean training loss of the last epoch.
        seconds: wall time of the whole run (training and test pass).
        images_per_second: training images per second of training time (augmentation,
            forward, backward and update).
    """

    seed: int
    test_accuracy: float
    train_loss: float
    seconds: float
    images_per_second: float


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed the global RNG for model init without leaking into the caller's RNG state."""
    cuda = [device.index or 0] if device.type == "cuda" else []
    previous = torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(device.type == "cpu" or previous)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(previous)


def _check_sets(train_set: ImageDataset, test_set: ImageDataset, epochs: int) -> None:
    if epochs < 1:
        raise ValueError(f"epochs must be positive, got {epochs}")
    if len(train_set) < 2 or len(test_set) < 1:
        sizes = f"{len(train_set)}, {len(test_set)}"
        raise ValueError(f"need >= 2 training and >= 1 test images, got {sizes}")
    if train_set.classes != test_set.classes:
        raise ValueError("training and test sets have different classes")
    if train_set.images.shape[1:] != test_set.images.shape[1:]:
        raise ValueError(
            f"image shapes differ: {tuple(train_set.images.shape[1:])} vs "
            f"{tuple(test_set.images.shape[1:])}"
        )


def _optimizer(model: nn.Module, recipe: EvalRecipe) -> torch.optim.SGD:
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [
        {"params": decay, "weight_decay": recipe.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.SGD(groups, lr=recipe.lr, momentum=0.9, nesterov=True)


def _lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / (warmup + 1)
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


class _Run:
    """The state of one evaluation training: model, optimiser, data and random streams."""

    def __init__(
        self,
        policy: Policy,
        train_set: ImageDataset,
        recipe: EvalRecipe,
        seed: int,
        dev: torch.device,
    ) -> None:
        self.recipe, self.device = recipe, dev
        self.num_classes = train_set.num_classes
        model = SmallVGG(train_set.channels, self.num_classes, recipe.widths)
        # Channels-last roughly doubles oneDNN's CPU convolution speed on these shapes.
        self.model = model.to(dev).to(memory_format=torch.channels_last)
        self.optimizer = _optimizer(self.model, recipe)
        self.augment = BatchAugmenter(policy)
        smoothing = policy.mix.label_smoothing or recipe.label_smoothing
        self.mix = policy.mix.model_copy(update={"label_smoothing": smoothing})
        self.mixing = bool(self.mix.mixup_alpha or self.mix.cutmix_alpha or self.mix.cutout)
        self.mean = torch.tensor(train_set.mean, device=dev).view(1, -1, 1, 1)
        self.std = torch.tensor(train_set.std, device=dev).view(1, -1, 1, 1)
        # Separate streams, so that a policy that draws more numbers does not change the order.
        self.shuffle_gen = torch.Generator().manual_seed(seed)
        self.aug_gen = torch.Generator(device=dev).manual_seed(seed + 1_000_003)
        self.images, self.labels = train_set.images.to(dev), train_set.labels.to(dev)
        n, bs = len(train_set), recipe.batch_size
        self.steps_per_epoch = max(1, n // bs + (1 if n % bs > 1 else 0))
        self.step_count = 0

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        return ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)

    def _loss(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = self.normalise(self.augment(images, self.aug_gen))
        if self.mixing:
            x, targets = mix_batch(x, labels, self.num_classes, self.mix, self.aug_gen)
            logits = self.model(x.contiguous(memory_format=torch.channels_last))
            return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
        logits = self.model(x)
        return F.cross_entropy(logits, labels, label_smoothing=self.mix.label_smoothing)

    def train_epoch(self, total_steps: int) -> tuple[float, int]:
        """One shuffled pass: (mean training loss, images seen)."""
        self.model.train()
        warmup = round(self.recipe.warmup_epochs * self.steps_per_epoch)
        order = torch.randperm(len(self.labels), generator=self.shuffle_gen).to(self.device)
        bs, loss_sum, seen = self.recipe.batch_size, torch.zeros((), device=self.device), 0
        for i in range(self.steps_per_epoch):
            lr = self.recipe.lr * _lr_factor(self.step_count, total_steps, warmup)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            idx = order[i * bs : (i + 1) * bs]
            loss = self._loss(self.images[idx], self.labels[idx])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.step_count += 1
            loss_sum += loss.detach() * idx.numel()
            seen += idx.numel()
        return float(loss_sum) / max(1, seen), seen

    @torch.no_grad()
    def accuracy(self, test_set: ImageDataset) -> float:
        self.model.eval()
        correct, bs = 0, self.recipe.eval_batch_size
        for start in range(0, len(test_set), bs):
            images = test_set.images[start : start + bs].to(self.device)
            labels = test_set.labels[start : start + bs].to(self.device)
            correct += int((self.model(self.normalise(images)).argmax(1) == labels).sum())
        return correct / len(test_set)


def train_and_test(
    policy: Policy,
    train_set: ImageDataset,
    test_set: ImageDataset,
    *,
    seed: int,
    epochs: int = DEFAULT_EPOCHS,
    recipe: EvalRecipe | None = None,
    device: str | torch.device = "cpu",
) -> EvalRun:
    """Train :class:`SmallVGG` on all of ``train_set`` with ``policy``; score it on ``test_set``.

    Args:
        policy: the augmentation policy (kind ``none`` still applies its base crop/flips).
        train_set: every training image (no subset is taken, nothing is held out from it).
        test_set: the split the search never saw; same classes and image shape.
        seed: seeds initialisation, shuffling and augmentation.
        epochs: passes over ``train_set``.
        recipe: the training recipe (default :class:`EvalRecipe`).
        device: where to train.

    Raises:
        ValueError: incompatible or too small datasets, or no epochs.
    """
    _check_sets(train_set, test_set, epochs)
    recipe = recipe or EvalRecipe()
    dev = torch.device(device)
    started = time.perf_counter()
    train_seconds, loss, images = 0.0, math.nan, 0
    with _seeded(seed, dev):
        run = _Run(policy, train_set, recipe, seed, dev)
        total_steps = run.steps_per_epoch * epochs
        for _ in range(epochs):
            epoch_start = time.perf_counter()
            loss, seen = run.train_epoch(total_steps)
            train_seconds += time.perf_counter() - epoch_start
            images += seen
        accuracy = run.accuracy(test_set)
    return EvalRun(
        seed=seed,
        test_accuracy=accuracy,
        train_loss=loss,
        seconds=time.perf_counter() - started,
        images_per_second=images / max(train_seconds, 1e-9),
    )


def evaluate_policy(
    policy: Policy,
    train_set: ImageDataset,
    test_set: ImageDataset,
    *,
    seeds: Iterable[int],
    epochs: int = DEFAULT_EPOCHS,
    recipe: EvalRecipe | None = None,
    device: str | torch.device = "cpu",
) -> list[float]:
    """Test accuracy of ``policy`` for each seed (see :func:`train_and_test`)."""
    return [
        train_and_test(
            policy, train_set, test_set, seed=s, epochs=epochs, recipe=recipe, device=device
        ).test_accuracy
        for s in seeds
    ]
