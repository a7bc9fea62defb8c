"""Markdown output shared by every report and page: table cells and tables."""

from __future__ import annotations

from typing import Any, Iterable, Sequence


def fmt(value: Any, spec: str = ".3f") -> str:
    """A table cell: n/a for None, floats with `spec`, a pair of floats as an interval, anything else as str."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return format(value, spec)
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, float) for v in value):
        return f"[{format(value[0], spec)}, {format(value[1], spec)}]"
    return str(value)


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], spec: str = ".3f") -> list[str]:
    """A Markdown table as lines; every cell goes through fmt, and pipes inside cells are escaped."""
    def line(cells: Sequence[Any]) -> str:
        return "| " + " | ".join(fmt(c, spec).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

    return [line(header), "|" + "---|" * len(header), *(line(r) for r in rows)]
