"""Best policies per search and per dataset, and their exports."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from service.datasets import service as datasets
from service.db.models import User
from service.errors import InvalidInput, NotFound
from service.policies import repository
from service.policies.schemas import PolicyFormat, PolicyRead
from service.searches import service as searches


def export(payload: dict[str, Any], fmt: PolicyFormat) -> PolicyRead:
    """Render a cached policy payload in ``fmt``.

    Args:
        payload: ``search_id``, ``dataset_id``, ``accuracy``, ``provisional``, ``policy``.
        fmt: The export format.

    Raises:
        InvalidInput: if the policy cannot be written in that format (e.g. timm for Cutout or flips).
    """
    exported: str | dict[str, Any] | None = None
    if fmt != "json":
        from ops.export import to_albumentations_dict, to_python_snippet, to_timm
        from ops.policy import load_policy

        policy = load_policy(payload["policy"])
        try:
            if fmt == "python":
                from ops.text_export import to_text_snippet

                exported = to_text_snippet(policy)
            elif fmt == "torchvision":
                exported = to_python_snippet(policy, "torchvision")
            elif fmt == "albumentations":
                exported = to_albumentations_dict(policy)
            else:
                # A config string where timm has one, else code over timm's own ops.
                try:
                    exported = to_timm(policy)
                except ValueError:
                    exported = to_python_snippet(policy, "timm")
        except ValueError as exc:
            raise InvalidInput(f"this policy cannot be exported as {fmt}: {exc}") from exc
    return PolicyRead(format=fmt, exported=exported, **payload)


def search_payload(session: Session, search_id: int, user: User) -> dict[str, Any]:
    """The policy of a search: the recorded one, or the best trial so far while it runs."""
    search = searches.get(session, search_id, user)
    record = repository.for_search(session, search.id)
    if record is not None:
        return {
            "search_id": search.id,
            "dataset_id": search.dataset_id,
            "accuracy": record.accuracy,
            "provisional": False,
            "policy": record.policy,
        }
    trial = repository.best_trial_so_far(session, search.id)
    if trial is None or trial.policy is None:
        raise NotFound(f"search {search_id} has no policy yet (it is {search.state})")
    return {
        "search_id": search.id,
        "dataset_id": search.dataset_id,
        "accuracy": trial.value,
        "provisional": True,
        "policy": trial.policy,
    }


def dataset_payload(session: Session, dataset_id: int, user: User) -> tuple[int, dict[str, Any]]:
    """The best recorded policy for a dataset, with the dataset's owner id (for caching)."""
    dataset = datasets.get(session, dataset_id, user)
    record = repository.best_for_dataset(session, dataset.id)
    if record is None:
        raise NotFound(f"dataset {dataset_id} has no completed search yet")
    payload = {
        "search_id": record.search_id,
        "dataset_id": dataset.id,
        "accuracy": record.accuracy,
        "provisional": False,
        "policy": record.policy,
    }
    return dataset.owner_id, payload
