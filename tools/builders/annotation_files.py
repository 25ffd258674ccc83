"""Reading a benchmark annotation file row by row, and how a row that cannot be read is reported.

A file is a JSON list (`.json`), one JSON object per line (`.jsonl`) or a parquet table (`.parquet`);
`tools.builders.annotations` turns each row into questions by its format's reader.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tools.environment.plain_data import plain_data


class AnnotationError(ValueError):
    """A file that cannot be read as the given format; the message names file and what was expected."""


@dataclass(frozen=True)
class RejectedRow:
    """A row that could not be read: where it is and why."""

    row: int
    reason: str
    detail: str


class RowError(Exception):
    """One field of one row is wrong; turned into a RejectedRow by the caller that knows file and row."""

    def __init__(self, reason: str, field: str, value: object, expected: str) -> None:
        super().__init__(reason)
        self.reason, self.field, self.value, self.expected = reason, field, value, expected

    def rejected(self, name: str, row: int) -> RejectedRow:
        """The RejectedRow of this error at `row` of file `name`."""
        shown = repr(self.value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        return RejectedRow(row, self.reason, f"{name} row {row}: field {self.field}={shown}: expected {self.expected}")


def read_records(path: Path, fmt: str,
                 required_columns: tuple[str | tuple[str, ...], ...]) -> Iterator[tuple[int, dict | RowError]]:
    """(row, object) for each row of the file, or (row, RowError) for a row that is not a JSON object."""
    def checked(row: int, record: object) -> tuple[int, dict | RowError]:
        """`record` if it is an object, else the error saying so."""
        return row, record if isinstance(record, dict) else RowError("bad_json", "row", record, "a JSON object")

    try:
        if path.suffix == ".parquet":
            import pandas

            table = pandas.read_parquet(path)
        else:
            text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise AnnotationError(f"{path}: cannot read the {fmt} annotation file: {error}") from error
    if path.suffix == ".parquet":
        missing = [(column,) if isinstance(column, str) else column for column in required_columns]
        missing = [columns[0] for columns in missing if not set(columns) & set(table.columns)]
        if missing:
            raise AnnotationError(f"{path}: parquet without the {fmt} columns {missing}; has "
                                  f"{list(table.columns)}")
        for row, record in enumerate(table.to_dict(orient="records"), start=1):
            # Missing values arrive as NaN, None or pandas.NA; plain_data turns numpy arrays into lists.
            yield row, {key: None if not hasattr(value, "__len__") and pandas.isna(value) else plain_data(value)
                        for key, value in record.items()}
    elif path.suffix == ".json":
        try:
            records = json.loads(text)
        except json.JSONDecodeError as error:
            raise AnnotationError(f"{path}: not JSON ({error}); expected a JSON list of {fmt} rows") from error
        if not isinstance(records, list):
            raise AnnotationError(f"{path}: top level is a {type(records).__name__}; expected a JSON list of "
                                  f"{fmt} rows")
        yield from (checked(row, record) for row, record in enumerate(records, start=1))
    elif path.suffix == ".jsonl":
        for row, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                yield checked(row, json.loads(line))
            except json.JSONDecodeError:
                yield row, RowError("bad_json", "line", line, "one JSON object per line")
    else:
        raise AnnotationError(f"{path}: unknown file type {path.suffix!r}; expected .json, .jsonl or .parquet")
