"""The error tree: one base class, and errors that carry data rather than only text."""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a submission, located so a clerk can find and fix it.

    `row` is the spreadsheet row number (1-based) and `column` the column letter, when known.
    `message` is polite Chinese that says what is wrong and how to fix it.
    """

    code: str
    message: str
    severity: str = "error"  # "error" rejects the submission, "warning" does not
    sheet: str | None = None
    row: int | None = None
    column: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def is_error(self) -> bool:
        return self.severity == "error"


class MailbotError(Exception):
    """Base of every error mailbot raises on purpose."""


class ConfigError(MailbotError):
    """The configuration is unusable; `errors` lists `path: what is expected` lines."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("\n".join(errors))


class Rejected(MailbotError):
    """The sender's mistake: answered with an error receipt listing `problems`."""

    def __init__(self, problems: list[Problem], *, attach_template: bool = False, filename: str = ""):
        self.problems = problems
        self.attach_template = attach_template
        self.filename = filename
        super().__init__("; ".join(p.message for p in problems))


class Unusable(MailbotError):
    """Files given to the command line (or found in the archive) that mailbot will not read:
    `files` lists (path, why) pairs; the command exits 2, as for any unusable argument."""

    def __init__(self, files: list[tuple[str, str]]):
        self.files = files
        super().__init__("\n".join(f"无法读取“{path}”：{why}。" for path, why in files))
