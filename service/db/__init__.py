"""The service database: typed models, engine factory and migrations."""

from service.db.engine import make_engine, make_sessionmaker
from service.db.models import (
    ApiToken,
    Base,
    CheckpointRecord,
    Dataset,
    PolicyRecord,
    Search,
    TrialSummary,
    User,
)

__all__ = [
    "ApiToken",
    "Base",
    "CheckpointRecord",
    "Dataset",
    "PolicyRecord",
    "Search",
    "TrialSummary",
    "User",
    "make_engine",
    "make_sessionmaker",
]
