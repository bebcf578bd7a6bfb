"""The trial trainer: recipe, ``train`` and ``evaluate`` (implemented in ``search.training``)."""

from search.training.evaluation import evaluate
from search.training.loop import EpochCallback, TrainResult, train
from search.training.recipe import TrainerRecipe

__all__ = ["EpochCallback", "TrainResult", "TrainerRecipe", "evaluate", "train"]
