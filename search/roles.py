"""Roles of a search's trials, read from their ``role`` user attr (see `search.lifecycle`)."""

from __future__ import annotations

from optuna.trial import FrozenTrial, TrialState

ROLES = ("baseline", "search", "candidate", "final")
#: Trial states of a trial not over yet.
UNFINISHED = (TrialState.RUNNING, TrialState.WAITING)


def role_of(trial: FrozenTrial) -> str:
    """The role of a trial (sampled trials without the attr are search trials)."""
    return str(trial.user_attrs.get("role", "search"))
