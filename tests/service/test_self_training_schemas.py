"""The API's self-training schemas repeat the job's options (the API image has no torch): they
must stay in step, field for field, default for default."""

from __future__ import annotations

from pydantic import BaseModel

from search.self_training.spec import SelfTrainingOptions, StudentOptions
from service.self_training.schemas import SelfTrainingCreate, StudentCreate


def _fields(model: type[BaseModel]) -> dict[str, tuple[object, object]]:
    return {
        name: (info.annotation, info.get_default(call_default_factory=True))
        for name, info in model.model_fields.items()
    }


def test_student_schema_mirrors_the_student_options() -> None:
    api, job = _fields(StudentCreate), _fields(StudentOptions)
    assert api.keys() == job.keys()
    for name, (annotation, default) in api.items():
        assert str(annotation) == str(job[name][0]), name
        assert default == job[name][1], name
    StudentCreate(arch="timm:resnet18")  # the recipe's timm architectures too


def test_launch_schema_mirrors_the_job_options() -> None:
    api = _fields(SelfTrainingCreate)
    job = _fields(SelfTrainingOptions)
    assert api.keys() - {"unlabelled_id"} == job.keys()
    for name in job.keys() - {"student"}:
        assert api[name][1] == job[name][1], name
    assert StudentOptions.model_validate(StudentCreate().model_dump()) == StudentOptions()
