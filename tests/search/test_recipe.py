"""How a recipe left to the defaults resolves for a training-set size."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from search.spec import DEFAULT_FINAL_MAX_AUTO_BATCH, SearchSpec
from search.training.recipe import (
    DEFAULT_STEPS,
    MAX_AUTO_BATCH,
    PROXY_MAX_AUTO_BATCH,
    TrainerRecipe,
    auto_batch_size,
    steps_per_epoch,
)


@pytest.mark.parametrize(
    ("n", "cap", "batch"),
    [(100, 256, 16), (300, 256, 32), (800, 256, 64), (1040, 256, 128), (30_000, 256, 256),
     (1040, 64, 64), (30_000, 64, 64), (800, 64, 64), (300, 64, 32), (30_000, 100, 100)],
)  # fmt: skip
def test_auto_batch_is_about_eight_steps_per_epoch_up_to_the_cap(
    n: int, cap: int, batch: int
) -> None:
    assert auto_batch_size(n, cap) == batch


def test_a_proxy_takes_steps_of_a_small_batch_on_mid_sized_data() -> None:
    # 1,040 images: 500 steps of 64 (30 epochs), not of 128 (56 epochs): half the images seen.
    proxy = TrainerRecipe().for_size(1040)
    assert proxy.batch_size == PROXY_MAX_AUTO_BATCH == 64
    assert proxy.epochs == math.ceil(DEFAULT_STEPS / steps_per_epoch(1040, 64)) == 30
    wide = TrainerRecipe(max_auto_batch=256).for_size(1040)
    assert wide.batch_size == 128 and wide.epochs == 56
    # On a GPU a step of 128 costs about a step of 64: the default cap there is 256.
    assert TrainerRecipe().for_size(1040, accelerator=True) == wide.model_copy(
        update={"max_auto_batch": None}
    )
    # Large data: the minimum of 4 epochs decides (1,876 steps of 64), fewer images than the
    # 5 epochs of 500 steps of 256.
    big = TrainerRecipe().for_size(30_000)
    big_wide = TrainerRecipe(max_auto_batch=256).for_size(30_000)
    assert (big.batch_size, big.epochs) == (64, 4) and (big_wide.batch_size, big_wide.epochs) == (
        256,
        5,
    )
    # An explicit batch size is kept whatever the cap.
    assert TrainerRecipe(batch_size=200).for_size(1040).batch_size == 200


def test_the_search_final_keeps_batches_that_follow_the_data() -> None:
    spec = SearchSpec.model_validate({"dataset": {"source": "digits"}})
    assert spec.recipe.max_auto_batch is None
    assert spec.recipe.batch_cap() == PROXY_MAX_AUTO_BATCH
    assert spec.final.max_auto_batch == DEFAULT_FINAL_MAX_AUTO_BATCH == MAX_AUTO_BATCH
    final = spec.final.for_size(1560)
    assert final.batch_size == 128 and final.epochs == math.ceil(3 * DEFAULT_STEPS / 13)
    # A given final recipe without a cap, as a stored one from before the cap, resolves as
    # it always did; one that names a cap keeps it.
    given = SearchSpec.model_validate(
        {"dataset": {"source": "digits"}, "final_recipe": {"steps": 900}}
    )
    assert given.final.max_auto_batch == MAX_AUTO_BATCH
    capped = SearchSpec.model_validate(
        {"dataset": {"source": "digits"}, "final_recipe": {"max_auto_batch": 32}}
    )
    assert capped.final.max_auto_batch == 32
    # A proxy cap raised above the final's default is kept by the derived final.
    gpu = SearchSpec.model_validate(
        {"dataset": {"source": "digits"}, "recipe": {"max_auto_batch": 1024}}
    )
    assert gpu.final.max_auto_batch == 1024
    assert SearchSpec.model_validate_json(spec.model_dump_json()) == spec


@pytest.mark.parametrize("cap", [0, 8, 8193])
def test_a_cap_out_of_bounds_is_refused(cap: int) -> None:
    with pytest.raises(ValidationError, match="max_auto_batch"):
        TrainerRecipe(max_auto_batch=cap)
