"""Render the month's digest workbook and 通报 draft of a 60-department county as the office sees them.

    .venv/bin/python tools/render_documents.py [--out DIR] [--period 2026-11] [--at 2026-12-01T10:00]
                                               [--departments 60] [--dpi 60]

A county of `--departments` departments (tests/factory.py: COUNTY) with a year of filings up to
`--period` is bulk-inserted into a SQLite file in DIR; `mailbot digest` builds its files as of
`--at` (office time); LibreOffice converts them to PDF and poppler draws one PNG per page.
Prints the page count and paper size of each document and the PNG paths, for review.
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mailbot import config as config_mod, digest, store  # noqa: E402
from tests import factory, render  # noqa: E402


def county_config(var: Path, departments: int) -> dict:
    return {
        "office": {"name": "赞皇县社会信用体系建设领导小组办公室", "address": "zhxxyt@126.com", "phone": "0311-84225051",
                   "doc_number_prefix": "赞信用办"},  # as in config/mailbot.example.yaml
        "imap": {"host": "127.0.0.1", "security": "none", "user": "zhxxyt@126.com"},
        "smtp": {"host": "127.0.0.1", "security": "none"},
        "database": {"url": f"sqlite:///{var}/mailbot.db"},
        "recipients": {"digest": ["zhxxyt@126.com"]},
        "tongbao": {"copy_to": ["县委办公室", "县政府办公室"]},
        "departments": factory.COUNTY[:departments],
    }


def build(out: Path, period: str, at: dt.datetime, departments: int = 60) -> list[Path]:
    """The digest's files for `period` as of `at`, written into `out`."""
    var = out / "var"
    if (var / "mailbot.db").exists():
        (var / "mailbot.db").unlink()
    office = config_mod.parse(county_config(var, departments)).office()
    engine = store.connect(f"sqlite:///{var}/mailbot.db")
    year, month = map(int, period.split("-"))
    factory.populate_county(engine, office, year, month)
    at = at if at.tzinfo else at.replace(tzinfo=office.office.tz)
    return digest.write_files(digest.build_monthly(engine, office, period, at), out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("var/render"))
    parser.add_argument("--period", default="2026-11")
    parser.add_argument("--at", type=dt.datetime.fromisoformat, default=dt.datetime(2026, 12, 1, 10, 0),
                        help="office time the digest is made (default: 1 December, as a clerk would)")
    parser.add_argument("--departments", type=int, default=60)
    parser.add_argument("--dpi", type=int, default=60)
    args = parser.parse_args()
    if render.MISSING:
        raise SystemExit(render.MISSING)
    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("*.png"):
        old.unlink()
    for path in build(args.out, args.period, args.at, args.departments):
        pdf = render.to_pdf(path, args.out)
        sizes = render.page_sizes(pdf)
        print(f"{path.name}: {len(sizes)} page(s), {sorted(set(sizes))} mm")
        for png in render.to_png(pdf, args.out, args.dpi):
            print(f"  {png}")


if __name__ == "__main__":
    main()
