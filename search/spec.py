"""The description of one search: data, space, budget, trainer recipes, sampler and baselines.

A `SearchSpec` is what a user submits (through the REST API or `search.run`) and what every
worker reads back from the study's user attrs, so it is strict (``extra="forbid"``) and every
number is bounded.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ops.policy import Policy
from search.datasets.spec import AnyDatasetSpec
from search.text.trainer import TextRecipe
from search.trainer import TrainerRecipe
from search.training.recipe import MAX_AUTO_BATCH

StrategyName = Literal[
    "autoaugment", "randaugment", "trivialaugment", "none", "fast-autoaugment", "eda"
]
SamplerName = Literal["tpe", "random", "grid", "cmaes"]
PrunerName = Literal["median", "successive-halving", "hyperband", "none"]
BaselineName = Literal[
    "none",
    "randaugment-2-9",
    "trivialaugment-wide",
    "autoaugment-cifar10",
    "autoaugment-svhn",
    "autoaugment-imagenet",
    "eda-defaults",
]
DEFAULT_BASELINES: tuple[BaselineName, ...] = (
    "none",
    "randaugment-2-9",
    "trivialaugment-wide",
    "autoaugment-cifar10",
)
# Strategies whose search space has categorical parameters, which CMA-ES cannot model.
_CATEGORICAL_STRATEGIES = frozenset({"autoaugment", "fast-autoaugment"})
_SEARCHABLE = frozenset({"autoaugment", "randaugment", "fast-autoaugment", "eda"})
#: Dataset sources of text; their searches use the ``eda`` strategy (or ``none``), the text
#: proxy (``text_recipe``) and these baselines (docs/text.md).
TEXT_SOURCES = frozenset({"wordnet-topics", "text-table"})
TEXT_BASELINES: tuple[BaselineName, ...] = ("none", "eda-defaults")


def baseline_policy(name: BaselineName) -> Policy:
    """The preset policy of a baseline (``eda-defaults``: EDA's reference defaults)."""
    if name == "eda-defaults":
        from ops.text_presets import TEXT_PRESETS

        return TEXT_PRESETS["eda"]
    from ops.presets import PRESETS

    return PRESETS[name]


#: The final recipe, unless given, trains this many times longer than the trial recipe.
FINAL_EPOCHS_FACTOR = 3
#: The final recipe's architecture, unless given or the trial recipe's is a timm one: a timm
#: ResNet, so that the served checkpoint loads with timm alone (docs/search.md).
DEFAULT_FINAL_ARCH = "timm:resnet18"
#: The final recipe's cap of a derived batch size, unless given: the proxies' small-batch cap
#: (`PROXY_MAX_AUTO_BATCH`) is for ranking cheaply, not for the model a user keeps.
DEFAULT_FINAL_MAX_AUTO_BATCH = MAX_AUTO_BATCH
# A NaN fails every bound with a misleading message ("less than or equal to 10"): refuse it,
# and the infinities, as what they are.
_STRICT = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Range(BaseModel):
    """A closed interval ``[low, high]`` searched for one recipe knob.

    Attributes:
        low: Lower bound.
        high: Upper bound (>= low).
        log: Sample on a log scale (needs low > 0).
    """

    model_config = _STRICT

    low: float = Field(ge=0.0, le=10.0)
    high: float = Field(ge=0.0, le=10.0)
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) must be >= low ({self.low})")
        if self.log and self.low <= 0:
            raise ValueError("a log-scale range needs low > 0")
        return self


class CoSearch(BaseModel):
    """Recipe knobs searched together with the policy (each optional).

    Attributes:
        mixup_alpha: MixUp alpha range (written into the policy's ``mix``).
        label_smoothing: label smoothing range, within [0, 0.5] (written into ``mix``).
        weight_decay: weight decay range (written into the trainer recipe).
    """

    model_config = _STRICT

    mixup_alpha: Range | None = None
    label_smoothing: Range | None = None
    weight_decay: Range | None = None

    @model_validator(mode="after")
    def _bounded(self) -> CoSearch:
        if self.label_smoothing is not None and self.label_smoothing.high > 0.5:
            raise ValueError("label_smoothing range must lie within [0, 0.5]")
        if self.weight_decay is not None and self.weight_decay.high > 0.1:
            raise ValueError("weight_decay range must lie within [0, 0.1]")
        return self

    def knobs(self) -> dict[str, Range]:
        """The declared knobs by name, in a fixed order."""
        found = {
            "mixup_alpha": self.mixup_alpha,
            "label_smoothing": self.label_smoothing,
            "weight_decay": self.weight_decay,
        }
        return {name: rng for name, rng in found.items() if rng is not None}


class BaseSpace(BaseModel):
    """Choices of the base augmentation searched with the policy (autoaugment, randaugment).

    The base is applied to every image before the policy's ops: a random crop of the image
    padded by ``crop_padding`` pixels (zeros), and a horizontal flip with probability 1/2. On
    a small training set it is often the strongest augmentation there is; whether mirrored
    images are still of their class depends on the data (photos yes, characters no), so both
    are searched unless fixed here. A single choice fixes the value.

    Attributes:
        crop_padding: padding choices in pixels.
        hflip: flip choices.
    """

    model_config = _STRICT

    crop_padding: list[int] = Field(default_factory=lambda: [0, 2, 4], min_length=1, max_length=8)
    hflip: list[bool] = Field(default_factory=lambda: [False, True], min_length=1, max_length=2)

    @model_validator(mode="after")
    def _distinct(self) -> BaseSpace:
        if any(not 0 <= c <= 64 for c in self.crop_padding):
            raise ValueError("crop_padding choices must lie within [0, 64] pixels")
        if len(set(self.crop_padding)) != len(self.crop_padding) or len(set(self.hflip)) != len(
            self.hflip
        ):
            raise ValueError("base_space choices must not repeat")
        return self


class FastAutoAugmentOptions(BaseModel):
    """Settings of the ``fast-autoaugment`` strategy (density matching).

    Attributes:
        folds: number of folds; one augmentation-free model is trained per fold.
        top_n: how many best candidate policies are merged into the final policy.
    """

    model_config = _STRICT

    folds: int = Field(default=2, ge=2, le=10)
    top_n: int = Field(default=3, ge=1, le=50)


class FinalPick(BaseModel):
    """Which policies are retrained at final fidelity before the answer is chosen.

    The search's proxy is short and (by default) uses a reduced training set, so its ranking
    is biased towards policies that learn fast. The ``candidates`` best distinct searched
    policies and the ``presets`` best baselines (by proxy value) are each retrained with the
    final recipe on the whole training part; the served policy is the one with the best
    validation accuracy of those trainings, and the rank agreement of proxy and final values
    (Kendall tau) is recorded.

    The presets' finals start as soon as every baseline is over, beside the search trials.
    The default of three contenders keeps the whole search near three final trainings of wall
    time on two workers (docs/benchmarks.md); in every benchmark run so far the winner was one
    of the two searched policies or the best preset by proxy.

    A tie on validation accuracy between a preset and a searched policy goes to the preset.
    So once a preset's final reaches 1.000 on validation no policy can beat it there, and with
    ``end_when_saturated`` the search ends at that point and serves it: the validation split
    is too small or too easy to rank policies, and the rest of the budget would be spent on
    trainings that cannot change the answer (docs/search.md, "A saturated validation").

    Attributes:
        candidates: searched policies retrained (0 keeps only presets).
        presets: baselines retrained.
        end_when_saturated: end the search when a preset's final scores 1.000 on validation.
    """

    model_config = _STRICT

    candidates: int = Field(default=2, ge=0, le=10)
    presets: int = Field(default=1, ge=0, le=len(get_args(BaselineName)))
    end_when_saturated: bool = True

    @property
    def size(self) -> int:
        """Most final trainings of a search."""
        return self.candidates + self.presets


class SearchSpec(BaseModel):
    """Everything that defines a search.

    Attributes:
        dataset: where the images come from.
        strategy: the search space (``trivialaugment`` and ``none`` evaluate one fixed policy).
            The default, ``randaugment``, has a space small enough (N, M, magnitude noise and
            the base crop/flip) for a budget of tens of trainings to cover it; a 30-dimensional
            ``autoaugment`` space needs far more trials than that to beat random choices.
        n_trials: budget of search trainings: every search trial that starts training counts,
            whether it completes or is pruned, so a search always ends. Baselines and the
            final pick come on top (``len(baselines) + n_trials + final_pick.size`` trainings
            at most; a failed trial is retried, and more than ``max(5, 2 * n_trials)``
            failures fail the search).
        num_sub_policies: K, sub-policies per candidate (autoaugment, fast-autoaugment).
        recipe: trainer recipe of search and baseline trials (batch size and epochs derived
            from the data unless given, see `TrainerRecipe.for_size`).
        final_recipe: recipe of the final pick's trainings on the whole training part;
            defaults to ``recipe`` trained ``FINAL_EPOCHS_FACTOR`` times longer, with the
            architecture ``DEFAULT_FINAL_ARCH`` unless ``recipe``'s is already a timm one; a
            final recipe given without ``arch`` has ``DEFAULT_FINAL_ARCH`` too.
        final_pick: how many searched policies and presets are retrained at final fidelity.
        val_fraction: share of the (non-held-out) data used for validation.
        train_size: size of the reduced training subset used by search trials (None: all).
        holdout_fraction: share held out before anything else and never seen by the search;
            the final model's accuracy on it is recorded as ``test_accuracy``.
        sampler: Optuna sampler; ``grid`` needs a finite space, ``cmaes`` a numeric one.
        pruner: Optuna pruner applied to search trials (never to baselines or the final);
            it never prunes before half the trial's epochs, nor while the other trials'
            curves at that epoch are still near chance level. None by default: even at half
            the epochs a strong policy's curve lags (measured: RandAugment(2, 9) pruned at
            0.26 on ``fonts`` where its full proxy training reached 0.83, above no
            augmentation's 0.73), and the budget counts pruned trainings anyway.
        seed: seed of splits, samplers and trainings.
        parallelism: most trials of this search running at once.
        priority: higher is served first by workers.
        co_search: recipe knobs searched together with the policy.
        base_space: choices of the base augmentation (crop padding, flip) searched with the
            policy by the autoaugment and randaugment strategies.
        baselines: preset policies trained as baseline trials.
        fast_autoaugment: options of the fast-autoaugment strategy.
        text_recipe: how a text search's trials and finals train the n-gram proxy (text
            datasets only; ``recipe`` and ``final_recipe`` are for images). Its baselines
            default to ``none`` and ``eda-defaults``.
    """

    model_config = _STRICT

    dataset: AnyDatasetSpec
    strategy: StrategyName = "randaugment"
    n_trials: int = Field(default=10, ge=1, le=10_000)
    num_sub_policies: int = Field(default=5, ge=1, le=25)
    recipe: TrainerRecipe = Field(default_factory=TrainerRecipe)
    final_recipe: TrainerRecipe | None = None
    final_pick: FinalPick = Field(default_factory=FinalPick)
    val_fraction: float = Field(default=0.2, gt=0.0, le=0.5)
    train_size: int | None = Field(default=None, ge=10, le=10_000_000)
    holdout_fraction: float = Field(default=0.0, ge=0.0, le=0.5)
    sampler: SamplerName = "tpe"
    pruner: PrunerName = "none"
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    parallelism: int = Field(default=4, ge=1, le=1024)
    priority: int = Field(default=0, ge=-100, le=100)
    co_search: CoSearch = Field(default_factory=CoSearch)
    base_space: BaseSpace = Field(default_factory=BaseSpace)
    baselines: list[BaselineName] = Field(default_factory=lambda: list(DEFAULT_BASELINES))
    fast_autoaugment: FastAutoAugmentOptions = Field(default_factory=FastAutoAugmentOptions)
    text_recipe: TextRecipe = Field(default_factory=TextRecipe)

    @field_validator("final_recipe", mode="before")
    @classmethod
    def _final_defaults(cls, value: object) -> object:
        # A final recipe given without an arch still trains the default timm final model, and
        # without a batch cap the final's (a stored final recipe from before the cap existed
        # resolves as it did).
        if isinstance(value, dict):
            defaults = {"arch": DEFAULT_FINAL_ARCH, "max_auto_batch": DEFAULT_FINAL_MAX_AUTO_BATCH}
            return {**defaults, **value}
        return value

    @model_validator(mode="after")
    def _check_combinations(self) -> SearchSpec:
        if len(set(self.baselines)) != len(self.baselines):
            raise ValueError("baselines must not repeat")
        self._check_modality()
        if self.strategy not in _SEARCHABLE:
            if self.n_trials != 1:
                raise ValueError(
                    f"n_trials must be 1 for strategy {self.strategy!r}: it has nothing to search"
                )
            if self.co_search.knobs():
                raise ValueError(f"co_search needs a searchable strategy, not {self.strategy!r}")
        if self.sampler == "cmaes" and self.strategy in _CATEGORICAL_STRATEGIES:
            raise ValueError(
                f"sampler 'cmaes' cannot search the categorical space of {self.strategy!r}; "
                "use 'tpe' or 'random'"
            )
        if self.sampler == "grid" and self.strategy != "randaugment":
            raise ValueError(
                f"sampler 'grid' needs a finite space; strategy {self.strategy!r} has none "
                "(only 'randaugment' does)"
            )
        if self.sampler == "grid" and self.co_search.knobs():
            raise ValueError("sampler 'grid' cannot co-search continuous recipe knobs")
        if self.strategy == "fast-autoaugment" and self.fast_autoaugment.top_n > self.n_trials:
            raise ValueError(
                f"fast_autoaugment.top_n ({self.fast_autoaugment.top_n}) exceeds n_trials "
                f"({self.n_trials})"
            )
        if self.final_recipe is None:
            final = self.recipe.scaled(FINAL_EPOCHS_FACTOR)
            cap = max(final.batch_cap(accelerator=True), DEFAULT_FINAL_MAX_AUTO_BATCH)
            update: dict[str, Any] = {"max_auto_batch": cap}
            if not final.arch.startswith("timm:"):
                update["arch"] = DEFAULT_FINAL_ARCH
            final = final.model_copy(update=update)
            object.__setattr__(self, "final_recipe", final)
        if self.final_pick.size == 0:
            raise ValueError("final_pick must retrain at least one candidate or preset")
        return self

    def _check_modality(self) -> None:
        """Text datasets take the eda strategy and text baselines; images never do."""
        if not self.is_text:
            if self.strategy == "eda" or "eda-defaults" in self.baselines:
                raise ValueError("strategy 'eda' and baseline 'eda-defaults' are for text datasets")
            return
        if self.strategy not in ("eda", "none"):
            raise ValueError(
                f"a text dataset is searched with strategy 'eda' (or 'none'), not {self.strategy!r}"
            )
        if "baselines" not in self.model_fields_set:
            object.__setattr__(self, "baselines", list(TEXT_BASELINES))
        wrong = [b for b in self.baselines if b not in TEXT_BASELINES]
        if wrong:
            raise ValueError(
                f"baselines {wrong} augment images; a text search takes {list(TEXT_BASELINES)}"
            )
        if "final_pick" not in self.model_fields_set:
            # Text trainings take seconds: every baseline is retrained, `none` included, so
            # the served policy never loses to no augmentation on the final comparison.
            object.__setattr__(self, "final_pick", FinalPick(presets=len(self.baselines)))

    @property
    def is_text(self) -> bool:
        """Whether the dataset is a text set (searched with the text proxy)."""
        return self.dataset.source in TEXT_SOURCES

    @property
    def final(self) -> TrainerRecipe:
        """The final recipe (always set after validation)."""
        if self.final_recipe is None:  # pragma: no cover - set by the validator
            raise RuntimeError("final_recipe is unset")
        return self.final_recipe

    @property
    def searchable(self) -> bool:
        """Whether the strategy has a search space."""
        return self.strategy in _SEARCHABLE
