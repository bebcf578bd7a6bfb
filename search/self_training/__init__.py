"""Self-training (Noisy Student) on unlabelled images, with the found policy as the noise.

A job trains a teacher on the labelled training part of a finished search (its policy and
final recipe), then ``iterations`` students: each is trained on the labelled images plus the
unlabelled images pseudo-labelled by the previous model (un-noised), under noise (the policy,
dropout, stochastic depth), and becomes the next teacher. Every step is one Optuna trial of
the job's study ``selftrain-<id>``, run by the same workers as the search trials.
"""

from search.self_training.lifecycle import (
    STUDY_PREFIX,
    JobNotFound,
    JobStatus,
    advance,
    cancel,
    create_job,
    fail_stale,
    status,
)
from search.self_training.pseudo import PseudoLabels, predict_probs, select_pseudo_labels
from search.self_training.spec import SelfTrainingJob, SelfTrainingOptions, StudentOptions

__all__ = [
    "STUDY_PREFIX",
    "JobNotFound",
    "JobStatus",
    "PseudoLabels",
    "SelfTrainingJob",
    "SelfTrainingOptions",
    "StudentOptions",
    "advance",
    "cancel",
    "create_job",
    "fail_stale",
    "predict_probs",
    "select_pseudo_labels",
    "status",
]
