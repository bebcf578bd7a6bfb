"""The proxy-batch benchmark's report: ranks per cap and their agreement."""

from __future__ import annotations

from benchmarks import proxy_batch
from benchmarks.proxy_batch import POLICIES, Job, Outcome


def _outcomes(cap: int, order: list[str], batch: int) -> list[Outcome]:
    # The first of ``order`` scores best; two seeds each.
    return [
        Outcome(
            Job("fonts", name, cap, seed),
            0.9 - 0.01 * i + 0.001 * (2 * seed - 1),
            10.0 + cap / 64,
            batch,
            30,
        )
        for i, name in enumerate(order)
        for seed in (0, 1)
    ]


def test_ranks_and_agreement_with_the_largest_cap() -> None:
    names = list(POLICIES)
    swapped = [names[1], names[0], *names[2:]]
    table = proxy_batch._table(_outcomes(64, swapped, 64) + _outcomes(256, names, 128), [64, 256])
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines() if "|" in line}
    assert rows[names[0]].endswith("0.890 (2) | 0.900 (1) |")
    assert rows[names[1]].endswith("0.900 (1) | 0.890 (2) |")
    n = len(names)
    tau = 1 - 4 / (n * (n - 1))  # one discordant pair of n
    assert (
        f"cap 64: batch 64, 30 epochs, 11.0 s per proxy; Kendall tau with cap 256: {tau:.2f}"
        in table
    )
    assert (
        "cap 256: batch 128, 30 epochs, 14.0 s per proxy; Kendall tau with cap 256: 1.00" in table
    )
