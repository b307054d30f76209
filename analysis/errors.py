"""polyjit's exception hierarchy and source locations for messages.

Errors live in analysis/ (the first layer that raises them); `polyjit` re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Loc:
    """A place in the user's source: 1-based line, 0-based column, as Python's ast reports them."""

    filename: str
    line: int
    col: int
    end_col: int | None
    text: str  # the whole source line

    def render(self) -> str:
        width = max(1, (self.end_col or self.col + 1) - self.col)
        caret = " " * self.col + "^" * width
        return f'  File "{self.filename}", line {self.line}, col {self.col + 1}\n    {self.text}\n    {caret}'

    def __str__(self) -> str:
        return f"{self.filename}:{self.line}:{self.col + 1}"


class PolyjitError(Exception):
    """Base of every error polyjit raises about the user's kernel."""

    def __init__(self, message: str, loc: Loc | None = None, hint: str | None = None):
        self.message = message
        self.loc = loc
        self.hint = hint
        parts = [f"{loc}: {message}" if loc else message]
        if loc is not None:
            parts.append(loc.render())
        if hint:
            parts.append(f"  hint: {hint}")
        super().__init__("\n".join(parts))


class UnsupportedError(PolyjitError):
    """The kernel uses a Python construct outside polyjit's subset."""


class TypingError(PolyjitError):
    """Types of the kernel's values cannot be inferred consistently."""


class ScheduleError(PolyjitError):
    """A schedule hint is unknown or would change the program's results."""
