"""Text policy presets: EDA with the reference implementation's defaults."""

from __future__ import annotations

from typing import get_args

from ops.policy import Policy, TextAugment, TextOpName, TextOpStep
from ops.text import rate_to_magnitude

#: The EDA reference implementation's defaults: alpha = 0.1 for every op, 9 copies per sentence.
EDA_ALPHA = 0.1
EDA_COPIES = 9


def eda_policy(alpha: float = EDA_ALPHA, copies: int = EDA_COPIES) -> Policy:
    """EDA with one rate ``alpha`` for all four ops and ``copies`` augmented copies.

    Raises:
        ValueError: for a rate outside [0, 0.5] or copies outside 1..32.
    """
    magnitude = rate_to_magnitude(alpha)
    steps = [TextOpStep(op=name, magnitude=magnitude) for name in get_args(TextOpName)]
    return Policy(kind="text", text=TextAugment(ops=steps, copies=copies))


#: Text presets by name.
TEXT_PRESETS: dict[str, Policy] = {"eda": eda_policy(), "none": Policy(kind="none")}
