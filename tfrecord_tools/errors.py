"""Errors raised on bad input: each names the file and the record index or line."""
from __future__ import annotations


class DataError(ValueError):
    """Bad input data. ``path`` names the file, ``where`` the record index or line number."""

    def __init__(self, path: str, where: str | None, problem: str):
        self.path = str(path)
        self.where = where
        self.problem = problem
        location = f"{self.path}, {where}" if where else self.path
        super().__init__(f"{location}: {problem}")


class RecordError(DataError):
    """A TFRecord record that does not match the official layout (or a corrupt file)."""

    def __init__(self, path: str, index: int | None, problem: str):
        self.index = index
        super().__init__(path, f"record {index}" if index is not None else None, problem)


class LabelError(DataError):
    """A ``label.tsv`` line that does not parse or holds an invalid score."""

    def __init__(self, path: str, line: int, problem: str):
        self.line = line
        super().__init__(path, f"line {line}", problem)
