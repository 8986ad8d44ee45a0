"""Plain-text tables for the notebooks: rows of dicts printed with aligned columns."""

from __future__ import annotations


def format_table(rows: list[dict[str, object]], digits: int = 1) -> str:
    """A plain-text table (numbers right-aligned, floats rounded, integers with thousands separators)."""
    def fmt(value: object) -> str:
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, int):
            return f"{value:,}"
        if isinstance(value, float):
            return f"{value:,.{digits}f}"
        return str(value)

    header = list(rows[0])
    cells = [[fmt(row[key]) for key in header] for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    lines += ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
              for row in cells]
    return "\n".join(lines)
