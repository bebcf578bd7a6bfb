"""The Optuna objective: one trial of a search becomes one training (or one candidate score).

The role comes from the trial's user attrs (``baseline``/``candidate``/``final`` are enqueued
with their policy; sampled trials are ``search``). Search trials draw their policy from the
strategy, report per-epoch validation accuracy and may be pruned; baseline, candidate and final
trials are never pruned. The final trial stores its checkpoint and model card.

The budget of search trainings is enforced here, not by a callback: a search trial claims its
slot before it trains by writing the ``budget_claim`` flag and then counting the search trials
that used or hold a slot (`lifecycle.budget_used`). Of two racing trials the later reader
always sees the other, so with any interleaving at most ``n_trials`` search trials train; a
trial turned away is pruned with the ``skipped`` attr and does not count.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol, cast

import optuna
import torch
from optuna.artifacts._protocol import ArtifactStore
from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from ops.policy import Policy, load_policy
from search.checkpoints import ModelCard, save_checkpoint, save_model_card
from search.datasets import load_dataset
from search.final_pick import VAL_LOSS_ATTR, preset_final_ready
from search.lifecycle import (
    CANCELLED,
    CLAIM_ATTR,
    DONE,
    FINALIZING,
    OPEN,
    REUSED_ATTR,
    SKIPPED_ATTR,
    STOPPED_ATTR,
    budget_used,
    role_of,
)
from search.spec import SearchSpec
from search.splits import SearchData, split_for_search
from search.storage import set_trial_params, set_trial_user_attrs
from search.strategies import Strategy, get_strategy
from search.strategies.samplers import CHANCE_ATTR, PLANNED_EPOCHS_ATTR
from search.text.trials import TextTrials
from search.trainer import TrainerRecipe, TrainResult, evaluate, train


class TrialStopped(RuntimeError):
    """The trial was stopped from outside (search cancelled, worker terminated)."""


class TrainFn(Protocol):
    """Replaces the training of a trial (dispatch benchmarks and tests of the worker fleet).

    Called after the policy is drawn or loaded; ``check_stop()`` raises `TrialStopped` when
    the worker is terminating or the search was cancelled. Returns the trial's value.
    """

    def __call__(self, trial: optuna.Trial, role: str, check_stop: Callable[[], None]) -> float: ...


@dataclass(frozen=True)
class FixedLengthTrial:
    """A `TrainFn` of fixed duration: ``steps`` steps of ``seconds / steps`` sleep.

    Each step reports an intermediate value and checks for stop, like an epoch; the value is
    a deterministic function of the trial's params, so the sampler has a signal to follow.
    """

    seconds: float = 2.0
    steps: int = 4

    def __call__(self, trial: optuna.Trial, role: str, check_stop: Callable[[], None]) -> float:
        """Sleep through the steps and return the params' value."""
        text = json.dumps(trial.params, sort_keys=True, default=str)
        value = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        for step in range(1, self.steps + 1):
            time.sleep(self.seconds / self.steps)
            if role != "final":
                trial.report(value * step / self.steps, step)
            check_stop()
        return value


def worker_identity() -> str:
    """``host:pid`` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _recipe(base: TrainerRecipe, overrides: dict[str, Any]) -> TrainerRecipe:
    return TrainerRecipe.model_validate({**base.model_dump(), **overrides})


class Objective:
    """Callable objective for ``study.optimize`` on a search study.

    Args:
        artifact_store: where checkpoints go.
        device: torch device of the trainings.
        worker: name recorded in the trial's ``worker`` attr (default ``host:pid``).
        stop_event: when set (e.g. by SIGTERM), the running trial stops after its epoch.
        data_cache_dir: decoded-dataset cache folder passed to `load_dataset`.
        train_fn: replaces the training (see `TrainFn`); the budget checks still apply.
    """

    def __init__(
        self,
        artifact_store: ArtifactStore,
        *,
        device: str = "cpu",
        worker: str | None = None,
        stop_event: threading.Event | None = None,
        data_cache_dir: str | None = None,
        train_fn: TrainFn | None = None,
    ) -> None:
        self.artifact_store = artifact_store
        self.train_fn = train_fn
        self.device = device
        self.worker = worker or worker_identity()
        self.stop_event = stop_event or threading.Event()
        self.data_cache_dir = data_cache_dir
        self._data: dict[str, SearchData] = {}
        self._fold_models: dict[str, Any] = {}
        self._text = TextTrials(artifact_store, self._raise_if_stopped)

    def __call__(self, trial: optuna.Trial) -> float:
        """Run one trial and return its validation accuracy (or candidate score).

        Its attrs go out a few at a time, each batch one transaction (see
        `search.storage.set_trial_user_attrs`): ``role`` (sampled trials), ``worker``,
        ``device``, ``policy``, the ``recipe`` fixed for the data, ``planned_epochs`` and
        ``chance`` once the policy is drawn, before the training; ``duration_s`` at the end,
        with the ``error`` if there is one.
        """
        start = time.perf_counter()
        study = trial.study
        attrs = study.user_attrs  # one read for the spec and the state
        spec = _parse_spec(attrs["spec"])
        user_attrs = trial.user_attrs  # read with the trial when it started
        role = str(user_attrs.get("role", "search"))
        # Written with the policy; an unset role reads as "search" meanwhile.
        pending: dict[str, Any] = {"worker": self.worker, "device": self.device}
        if "role" not in user_attrs:  # enqueued trials carry theirs
            pending["role"] = role
        if user_attrs.get(STOPPED_ATTR):  # a copy of a handed-back trial: this run is its own
            pending[STOPPED_ATTR] = False
        error: str | None = None
        stopped = False
        try:
            self._check_start(study, trial, spec, role, attrs.get("state"))
            return self._run(trial, spec, role, pending)
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:2000]
            stopped = isinstance(exc, TrialStopped)
            raise
        finally:
            end = {**pending, "duration_s": round(time.perf_counter() - start, 3)}
            if error is not None:
                end["error"] = error
            if stopped:  # handed back or cancelled: not a failure of the trial's own
                end[STOPPED_ATTR] = True
            set_user_attrs(trial, end)

    def data(self, spec: SearchSpec) -> SearchData:
        """The search's splits, decoded once per process."""
        key = spec.dataset.model_dump_json() + f"|{spec.seed}|{spec.val_fraction}"
        key += f"|{spec.train_size}|{spec.holdout_fraction}"
        if key not in self._data:
            ds = load_dataset(spec.dataset, cache_dir=self.data_cache_dir)
            self._data[key] = split_for_search(ds, spec)
        return self._data[key]

    def _check_start(
        self, study: optuna.Study, trial: optuna.Trial, spec: SearchSpec, role: str, state: Any
    ) -> None:
        if state == CANCELLED:
            raise TrialStopped("search cancelled")
        if role == "final" and state != FINALIZING:
            # An open search runs only its presets' finals (picked once the baselines are over).
            contender = int(trial.user_attrs.get("contender", -1))
            if state != OPEN or not preset_final_ready(study, contender):
                raise optuna.TrialPruned(f"final trial not needed (search is {state})")
        if role in ("final", "candidate") and _superseded(study, trial, role):
            raise optuna.TrialPruned(f"duplicate {role} trial: an earlier one holds its place")
        if role != "search":
            return
        if state != OPEN:
            skip(trial, f"search is {state}: no more search trials")
        claim_budget_slot(study, trial, spec.n_trials)

    def _run(
        self, trial: optuna.Trial, spec: SearchSpec, role: str, pending: dict[str, Any]
    ) -> float:
        """Draw or load the policy, write it with the ``pending`` attrs, train or score."""
        strategy = get_strategy(spec.strategy, spec)
        if role == "search":
            policy = suggest_together(strategy, trial)
            overrides = strategy.recipe_overrides(trial.params)
            if overrides:  # readers default to none
                pending["recipe_overrides"] = overrides
        else:
            policy = load_policy(trial.user_attrs["policy"])
            overrides = dict(trial.user_attrs.get("recipe_overrides") or {})
        dumped = policy.model_dump(mode="json")
        if dumped != trial.user_attrs.get("policy"):  # enqueued trials usually carry theirs
            pending["policy"] = dumped
        if role == "search" and trial.user_attrs.get("start_point") and not overrides:
            baseline = _trained_as_baseline(trial.study, dumped)
            if baseline is not None:
                return _reuse(trial, baseline, pending)
        if self.train_fn is not None:
            set_user_attrs(trial, pending)
            pending.clear()
            return float(self.train_fn(trial, role, lambda: self._raise_if_stopped(trial.study)))
        if spec.is_text:  # the n-gram text proxy (search.text.trials)
            attrs, train_text = self._text.run(trial, spec, policy, role)
            set_user_attrs(trial, {**pending, **attrs})
            pending.clear()
            return train_text()
        data = self.data(spec)
        scores = role == "search" and not strategy.trains_in_search
        train_set = data.final_train if role == "final" else data.search_train
        recipe = _recipe(spec.final if role == "final" else spec.recipe, overrides)
        recipe = recipe.for_size(
            len(train_set), accelerator=torch.device(self.device).type != "cpu"
        )
        if role != "final":
            recipe = recipe.with_proxy_validation()
        if not scores:
            pending["recipe"] = recipe.model_dump(mode="json", exclude_defaults=True)
            pending[PLANNED_EPOCHS_ATTR] = recipe.epochs
            pending[CHANCE_ATTR] = 1.0 / max(1, train_set.num_classes)
        set_user_attrs(trial, pending)
        pending.clear()
        if scores:
            return self._score_candidate(trial, spec, policy, data)
        if role == "final":
            return self._final(trial, spec, policy, recipe, data)
        result = self._train(trial, spec, policy, recipe, data, role)
        return float(result.metrics["val_accuracy"])

    def _score_candidate(
        self, trial: optuna.Trial, spec: SearchSpec, policy: Policy, data: SearchData
    ) -> float:
        from search.fast_autoaugment import FoldModels

        key = f"{trial.study.study_name}|{spec.model_dump_json()}"
        if key not in self._fold_models:
            self._fold_models[key] = FoldModels.train(
                spec, data.search_train, self.device, stop=self._raise_if_stopped
            )
        folds: FoldModels = self._fold_models[key]
        scores = folds.score(policy, self.device, seed=spec.seed + trial.number)
        trial.set_user_attr("fold_scores", scores)
        return sum(scores) / len(scores)

    def _raise_if_stopped(self, study: optuna.Study | None = None) -> None:
        if self.stop_event.is_set():
            raise TrialStopped("worker terminated")
        state = None if study is None else study.user_attrs.get("state")
        if state == CANCELLED:
            raise TrialStopped("search cancelled")
        if state == DONE:  # answered while this trial ran (a saturated validation, lifecycle)
            raise optuna.TrialPruned("search done: its answer is chosen")

    def _train(
        self,
        trial: optuna.Trial,
        spec: SearchSpec,
        policy: Policy,
        recipe: TrainerRecipe,
        data: SearchData,
        role: str,
    ) -> TrainResult:
        history: list[float | None] = []  # per epoch; None where the epoch did not validate
        train_set = data.final_train if role == "final" else data.search_train

        def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
            accuracy = float(metrics["val_accuracy"])
            history.extend([None] * (epoch - 1 - len(history)))
            history.append(accuracy)
            trial.set_user_attr("epochs", history)
            if role != "final":
                # Finals train longer with another recipe: their curves would skew the pruner.
                trial.report(accuracy, epoch)
            # Pruning at the last epoch would save nothing and waste the finished training.
            if role == "search" and epoch < (recipe.epochs or 0) and trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch}: {accuracy:.4f}")
            self._raise_if_stopped(trial.study)

        result = train(
            recipe,
            policy,
            train_set,
            data.val,
            device=self.device,
            seed=spec.seed,
            on_epoch=on_epoch,
        )
        if result.metrics.get("val_loss") is not None:  # ties on accuracy go to the lower loss
            trial.set_user_attr(VAL_LOSS_ATTR, float(result.metrics["val_loss"]))
        return result

    def _final(
        self,
        trial: optuna.Trial,
        spec: SearchSpec,
        policy: Policy,
        recipe: TrainerRecipe,
        data: SearchData,
    ) -> float:
        result = self._train(trial, spec, policy, recipe, data, "final")
        metrics = {"val_accuracy": float(result.metrics["val_accuracy"])}
        if data.test is not None:
            test = evaluate(result.model, data.test, self.device, mean=result.mean, std=result.std)
            metrics["test_accuracy"] = float(test["accuracy"])
            trial.set_user_attr("test_accuracy", metrics["test_accuracy"])
        ds = data.final_train
        card = ModelCard(
            arch=recipe.arch,
            num_classes=ds.num_classes,
            classes=list(ds.classes),
            in_channels=ds.channels,
            image_size=ds.image_size,
            mean=list(result.mean or ds.mean),
            std=list(result.std or ds.std),
            policy=policy.model_dump(mode="json"),
            recipe=recipe.model_dump(mode="json"),
            metrics=metrics,
        )
        artifact_id, sha = save_checkpoint(result.state_dict, card, self.artifact_store, trial)
        card_id = save_model_card(card, self.artifact_store, trial)
        trial.set_user_attr("checkpoint", artifact_id)
        trial.set_user_attr("model_card", card_id)
        trial.set_user_attr("sha256", sha)
        return metrics["val_accuracy"]


def _trained_as_baseline(study: optuna.Study, policy: dict[str, Any]) -> FrozenTrial | None:
    """The complete baseline that trained exactly this policy with the proxy recipe, if any."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if (
            role_of(t) == "baseline"
            and t.user_attrs.get("policy") == policy
            and not t.user_attrs.get("recipe_overrides")
            and t.value is not None
        ):
            return t
    return None


def _reuse(trial: optuna.Trial, baseline: FrozenTrial, pending: dict[str, Any]) -> float:
    """Give a search trial the result of the baseline that trained its policy.

    A starting point that is a preset (RandAugment(2, 9)) is the baseline of that preset: same
    policy, recipe, data and seed, hence the same training. The trial takes its curve, loss and
    value (the sampler and the pruner see them as a search result) and still holds its slot of
    the budget; its ``reused_from`` attr names the baseline, and it counts nowhere as a training.
    """
    copied = ("epochs", VAL_LOSS_ATTR, "recipe", PLANNED_EPOCHS_ATTR, CHANCE_ATTR)
    attrs = {k: baseline.user_attrs[k] for k in copied if k in baseline.user_attrs}
    set_user_attrs(trial, {**pending, **attrs, REUSED_ATTR: baseline.number})
    pending.clear()
    for step, value in sorted(baseline.intermediate_values.items()):
        trial.report(value, step)
    return float(cast(float, baseline.value))


def claim_budget_slot(study: optuna.Study, trial: optuna.Trial, n_trials: int) -> None:
    """Let a search trial train only if the budget of trainings has a slot left for it.

    Writes the ``budget_claim`` flag first, then counts (in a fresh read) the other search
    trials that trained or hold a claim: of two racing trials the later reader always sees
    the other, so at most ``n_trials`` train. Both may see each other and step back, which
    leaves the slot to a later trial.

    Raises:
        optuna.TrialPruned: when the budget is already filled (the trial is marked skipped).
    """
    set_user_attrs(trial, {CLAIM_ATTR: True})
    trials = study._get_trials(deepcopy=False, use_cache=False)
    used = budget_used([t for t in trials if t.number != trial.number])
    if used >= n_trials:
        skip(trial, "budget reached: no slot for another search trial")


def skip(trial: optuna.Trial, reason: str) -> NoReturn:
    """Turn a search trial away before it trains: it will not count towards the budget."""
    set_user_attrs(trial, {SKIPPED_ATTR: reason, CLAIM_ATTR: False})
    raise optuna.TrialPruned(reason)


def set_user_attrs(trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    """``trial.set_user_attr`` for several attrs at once (one transaction on an RDB storage)."""
    if not attrs:
        return
    set_trial_user_attrs(trial.storage, trial._trial_id, attrs)
    # What `Trial.set_user_attr` does after its write: `trial.user_attrs` reads this copy.
    trial._cached_frozen_trial.user_attrs.update(attrs)


def suggest_together(strategy: Strategy, trial: optuna.Trial) -> Policy:
    """``strategy.suggest(trial)``, its params written in one transaction at the end.

    Optuna writes each suggested param as it is drawn, a transaction apiece; while the
    strategy draws, the trial's storage is a stand-in that holds the writes back (the trial
    keeps its own copy of its params, so nothing reads them from storage meanwhile).
    """
    storage = trial.storage
    held = _HeldParams(storage)
    trial.storage = cast(BaseStorage, held)
    try:
        policy = strategy.suggest(trial)
    except Exception:
        trial.storage = storage
        with contextlib.suppress(Exception):  # the strategy's error is the one to report
            set_trial_params(storage, trial._trial_id, held.params)
        raise
    trial.storage = storage
    set_trial_params(storage, trial._trial_id, held.params)
    return policy


class _HeldParams:
    """A trial's storage that holds back its param writes (see `suggest_together`)."""

    def __init__(self, storage: BaseStorage) -> None:
        self._storage = storage
        self.params: list[tuple[str, float, BaseDistribution]] = []

    def set_trial_param(
        self, trial_id: int, name: str, value: float, distribution: BaseDistribution
    ) -> None:
        self.params.append((name, value, distribution))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)


def _superseded(study: optuna.Study, trial: optuna.Trial, role: str) -> bool:
    """Whether an earlier live trial has the same role and fixed params.

    Concurrent `advance` calls (workers and the reconciler) may each enqueue the same final or
    candidate trial; the lowest-numbered one runs and the others prune themselves.
    """
    fixed = study._storage.get_trial_system_attrs(trial._trial_id).get("fixed_params")
    return any(
        t.number < trial.number
        and role_of(t) == role
        and t.system_attrs.get("fixed_params") == fixed
        and t.state not in (TrialState.FAIL, TrialState.PRUNED)
        for t in study.get_trials(deepcopy=False)
    )


@functools.lru_cache(maxsize=64)
def _parse_spec(text: str) -> SearchSpec:
    """The spec of a study's ``spec`` attr, parsed once per distinct text (specs never change)."""
    return SearchSpec.model_validate_json(text)
