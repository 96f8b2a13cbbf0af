"""Bytes of an attachment -> sheets of cell values (xlsx, xls, csv, docx, zip)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

Cell = None | str | int | float | bool | dt.datetime | dt.date | dt.time


@dataclass
class Sheet:
    name: str
    rows: list[tuple[Cell, ...]]  # rows[i] is spreadsheet row i + 1
    merged: list[tuple[int, int, int, int]] = field(default_factory=list)  # (min_row, min_col, max_row, max_col), 1-based


@dataclass
class Workbook:
    kind: str  # "xlsx", "xls", "csv", "docx"
    sheets: list[Sheet]
    filename: str = ""
