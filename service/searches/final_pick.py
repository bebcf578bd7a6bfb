"""The final pick of a search as the service shows it, read from its final trials and result.

Each ``final`` trial carries its contender (index, label, proxy value, source trial and role,
preset); a contender retried after a failure has several. While the pick runs, the rows show
each contender's current attempt; once the search is done, the study's ``result`` is the
record (final values, test accuracies, winner, proxy winner, Kendall tau).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

#: Below this rank agreement the proxy's ranking is called unreliable.
RELIABLE_TAU = 0.5


def _current(attempts: list[FrozenTrial]) -> FrozenTrial:
    """The attempt that speaks for a contender: complete, else live, else the last one."""
    for states in (("COMPLETE",), ("RUNNING", "WAITING")):
        for t in attempts:
            if t.state.name in states:
                return t
    return attempts[-1]


def _row(index: int, attempts: list[FrozenTrial]) -> dict[str, Any]:
    trial = _current(attempts)
    attrs = trial.user_attrs
    complete = trial.state.name == "COMPLETE"
    return {
        "index": index,
        "label": str(attrs.get("label") or f"contender {index}"),
        "role": attrs.get("source_role"),
        "baseline": attrs.get("baseline"),
        "source_trial": attrs.get("source_trial"),
        "proxy_value": attrs.get("proxy_value"),
        "final_value": trial.value if complete else None,
        "final_loss": attrs.get("val_loss") if complete else None,
        "test_accuracy": attrs.get("test_accuracy") if complete else None,
        "final_trial": trial.number if complete else None,
        "state": trial.state.name,
        "trials": [t.number for t in attempts],
    }


def final_pick(
    trials: Sequence[FrozenTrial], result: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The final pick's rows and verdict (None before any final trial exists).

    Returns:
        ``contenders`` (rows in contender order: label, role, baseline, source_trial,
        proxy_value, final_value, final_loss, test_accuracy, final_trial, state, trials, winner,
        proxy_winner), ``done``, ``size``, ``winner``, ``proxy_winner``, ``kendall_tau`` and
        ``proxy_reliable`` (None until the winner is known); once it is, ``decided_by`` (the
        rule that chose the winner over the runner-up), ``saturated`` (the winner scored
        1.000 on validation) and ``ended_early`` (``search_trials`` of ``n_trials``, when a
        preset's perfect final ended the search before its budget).
    """
    from search.lifecycle import role_of

    by_index: dict[int, list[FrozenTrial]] = {}
    for t in sorted(trials, key=lambda t: t.number):
        if role_of(t) == "final":
            by_index.setdefault(int(t.user_attrs.get("contender", 0)), []).append(t)
    if not by_index:
        return None
    rows = [_row(index, by_index[index]) for index in sorted(by_index)]
    result = result or {}
    recorded = {r.get("label"): r for r in result.get("final_pick") or []}
    for row in rows:
        done = recorded.get(row["label"])
        if done is not None:
            for key in ("final_value", "final_loss", "test_accuracy", "final_trial"):
                row[key] = done.get(key)
    proxied = [r for r in rows if isinstance(r["proxy_value"], int | float)]
    proxy_winner = result.get("proxy_winner") or (
        max(proxied, key=lambda r: (r["proxy_value"], -r["index"]))["label"] if proxied else None
    )
    winner = result.get("winner")
    for row in rows:
        row["winner"] = winner is not None and row["label"] == winner
        row["proxy_winner"] = row["label"] == proxy_winner
    tau = result.get("kendall_tau")
    reliable = None
    if winner is not None:
        reliable = winner == proxy_winner and (tau is None or tau >= RELIABLE_TAU)
    return {
        "contenders": rows,
        "done": sum(1 for r in rows if r["final_value"] is not None),
        "size": len(rows),
        "winner": winner,
        "proxy_winner": proxy_winner,
        "kendall_tau": tau,
        "proxy_reliable": reliable,
        "decided_by": result.get("decided_by"),
        "saturated": result.get("saturated"),
        "ended_early": result.get("ended_early"),
    }
