"""Record benchmark figures in docs/benchmarks.md, one section per benchmark.

Each benchmark owns a section delimited by HTML comments, so benchmarks can be re-run in any
order and each rewrites only its own figures.
"""

from __future__ import annotations

import platform
import re
from datetime import UTC, datetime
from pathlib import Path

import torch

REPORT_PATH = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
_HEADER = (
    "# Benchmarks\n\n"
    "Figures written by the scripts in `benchmarks/` (`make bench`); each section records the\n"
    "command, the machine and the date it was measured on.\n"
)


def machine_description() -> str:
    """Describe the machine a benchmark ran on (CPU, cores, GPU if any, torch version)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {torch.get_num_threads()} torch threads, {gpu}, torch {torch.__version__}"


def write_section(name: str, command: str, body: str, path: Path = REPORT_PATH) -> None:
    """Replace (or append) the section ``name`` of the benchmark report.

    Args:
        name: Section title, also its identity in the file.
        command: The command that reproduces the figures.
        body: Markdown with the figures (tables, image links).
        path: Report file; defaults to docs/benchmarks.md.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text() if path.exists() else _HEADER
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = (
        f"<!-- begin {name} -->\n## {name}\n\n"
        f"Command: `{command}`  \nMachine: {machine_description()}  \nMeasured: {stamp}\n\n"
        f"{body.strip()}\n<!-- end {name} -->\n"
    )
    pattern = re.compile(
        rf"<!-- begin {re.escape(name)} -->.*?<!-- end {re.escape(name)} -->\n", re.DOTALL
    )
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)
