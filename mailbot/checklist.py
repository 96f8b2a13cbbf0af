"""Cells -> the checklist: header fields, rows and layout problems. Pure: no I/O.

Real files differ from the template (domain.md, "The template"): the table may sit on any
sheet, under a title, with a 序号 column, extra columns, columns in another order and header
texts with line breaks, spaces or half-width parentheses; 单位/报送人/报送日期 stand in one
cell, in the next cell, or in a footer; notes and blank rows surround the data; a month with
nothing to report is one merged sentence. We find everything by what the cells say.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from . import dates
from .errors import Problem, Rejected
from .template import COLUMNS
from .workbook import Cell, Sheet, Workbook, get_column_letter

FIELDS = ("entity", "matter", "date", "usage", "measure")
FIELD_TITLES = dict(zip(FIELDS, COLUMNS, strict=True))
_HEADER_SCAN_ROWS = 40

# A header cell's text (normalised, parenthesised remarks dropped) -> column; first match wins.
_COLUMN_PATTERNS = tuple((name, re.compile(rx)) for name, rx in (
    ("seq", r"^(序号|编号|序|No\.?)$"),
    ("code", r"^(?!.*名称).*(信用代码|身份证|证件号|证照号)"),
    ("date", r"^(?!报送|填报|填表).{0,8}(日期|时间)$"),  # 日期, 使用日期, 使用信用记录日期, not 报送日期
    ("measure", r"措施|激励|惩戒|奖惩"),
    ("usage", r"信用记录|信用报告|报告情况|使用情况|查询情况|查询结果"),
    ("entity", r"市场主体|自然人|主体名称|企业名称|单位名称|对象名称|当事人|申请人|相对人|^名称$"),
    ("matter", r"事项|业务名称|业务类型"),
))
# Header-field labels as people write them (spaces allowed inside) -> field; None: a label we
# only need so that its text is not taken for the value before it (报送人：张三 联系电话：…).
_LABELS = {
    "单位": "unit", "填报单位": "unit", "报送单位": "unit", "单位名称": "unit",
    "报送人": "submitter", "填报人": "submitter", "填表人": "submitter", "经办人": "submitter",
    "报送日期": "report_date", "填报日期": "report_date", "填表日期": "report_date", "报送时间": "report_date",
    "联系人": None, "联系电话": None, "电话": None, "联系方式": None, "手机": None, "审核人": None,
    "负责人": None, "单位负责人": None, "分管领导": None, "签字": None, "盖章": None,
}
_LABEL = re.compile("(" + "|".join(r"\s*".join(w) for w in sorted(_LABELS, key=len, reverse=True))
                    + r")\s*(?:[(（][^)）]{0,8}[)）])?\s*[:：]")
_LABEL_HEADS = frozenset(w[0] for w in _LABELS)  # a cheap first test: this runs for every row
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
_NOTE = re.compile(r"^(注|备注|附注|说明|填表说明|填报说明)\s*\d*\s*[:：.、]|^注\d")
_NUMBERING = re.compile(r"^[(（]?\d{1,3}[)）.、]?$")
_INSTRUCTION_SHEET = re.compile(r"说明|须知|示例|样例|instruction|readme", re.I)
# A nil report: a whole cell such as 本月无使用信用记录和信用报告情况, or only a placeholder.
_PLACEHOLDERS = frozenset({"无", "暂无", "/", "\\", "-", "--", "—", "——", "空", "没有", "不涉及", "无此情况"})
_NIL_HEAD = re.compile(r"^(本单位|我单位|我局)?(\d{4}年)?(\d{1,2}月份?|本月份?|当月|本期|本季度)?"
                       r"(本单位|我单位|我局|本部门)?(暂无|无|未|没有|不涉及)")
_NIL_TOPIC = re.compile(r"信用记录|信用报告|使用信用|相关情况|相关业务|相关事项")
_NIL_PERIOD = re.compile(r"本月|当月|本期|\d月")
_NOT_NIL = re.compile(r"失信|不良|异常|违法|黑名单")
# ... or a sentence in a letter: 经核查，我局2026年11月未发生使用信用记录和信用报告的情况。
_NIL_SENTENCE = re.compile(r"(无|未|没有)(发生|有)?(使用|查询|应用)?[^。;；，,]{0,12}(信用记录|信用报告)")


def norm(value: Cell) -> str:
    """Text as a person reads it: full-width folded, spaces and line breaks removed."""
    if value is None:
        return ""
    s = str(value)
    if not unicodedata.is_normalized("NFKC", s):  # a quick check, far cheaper than normalising
        s = unicodedata.normalize("NFKC", s)
    return "".join(s.split())  # split() drops exactly what \s matches


def text(value: Cell) -> str:
    """A cell's text with outer whitespace trimmed, for storing what the department wrote."""
    if type(value) is str:  # noqa: E721  (the common case first: this runs for every cell)
        return value.strip()
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


@dataclass
class Row:
    row_no: int
    cells: dict[str, Cell]  # field (and "code" when the file has that column) -> raw cell value
    extras: dict[str, str] = field(default_factory=dict)  # other columns: header text -> text

    def text(self, name: str) -> str:
        value = self.cells.get(name)
        return value.strip() if type(value) is str else text(value)  # noqa: E721


@dataclass
class Checklist:
    sheet: str
    header_row: int  # the header's last row, right above the data; 0 when a nil report carries no table
    columns: dict[str, int]  # field -> 1-based column index
    unit: str = ""
    submitter: str = ""
    report_date: Cell = None
    nil_report: bool = False
    rows: list[Row] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    extra_columns: dict[str, int] = field(default_factory=dict)  # Row.extras key -> 1-based column index
    header_top: int = 0  # the header's first row when it stands over two rows (a group title above)
    sheets: int = 1  # sheets in the file that hold a checklist table (instructions and hidden ones aside)
    sheet_reason: str = "only"  # why this sheet: only, period, active, dates, best (see `parse`)
    period: str | None = None  # YYYY-MM the sheet's name stands for, when its rows do not say otherwise

    def column_letter(self, name: str) -> str | None:
        index = self.columns.get(name)
        return get_column_letter(index) if index else None


def column_field(title: Cell) -> str | None:
    """Which column a header cell names: a field, "seq", "code", or None."""
    t = re.sub(r"[*＊※]", "", norm(title))
    bare = re.sub(r"\([^)]*\)", "", t)
    if not bare or len(t) > 30 or ":" in bare or t.endswith(("清单", "情况表", "统计表")):
        return None
    return next((name for name, rx in _COLUMN_PATTERNS if rx.search(bare)), None)


@dataclass
class _Header:
    top: int  # first row of the header (1-based)
    row: int  # last row: the data start below it
    columns: dict[str, int]  # field -> 1-based column index
    titles: tuple  # the title of each column, the lower row's where the header has two

    @property
    def score(self) -> int:
        return sum(1 for f in FIELDS if f in self.columns)


def _fields(row: tuple) -> dict[str, int]:
    found: dict[str, int] = {}
    for index, value in enumerate(row, start=1):
        if isinstance(value, str) and (name := column_field(value)) and name not in found:
            found[name] = index
    return found


def _find_header(rows: list[tuple], merged: list[tuple[int, int, int, int]] = ()) -> _Header | None:
    """The row naming most fields (at least two), the first on a tie; with the row under it when
    that one holds the titles under a group title merged across them (a header over two rows)."""
    best, best_score = None, 1
    for number, row in enumerate(rows[:_HEADER_SCAN_ROWS], start=1):
        found = _fields(row)
        if sum(1 for f in FIELDS if f in found) < 2:
            continue
        header = _two_rows(rows, number, found, merged) or _Header(number, number, found, row)
        if header.score > best_score:
            best, best_score = header, header.score
    return best


def _two_rows(rows: list[tuple], number: int, found: dict[str, int], merged) -> _Header | None:
    """Row `number` and the one under it as one header, if the lower row only holds titles, each under
    an empty cell or under a group title merged across several columns, and together they name more."""
    if number >= len(rows):
        return None
    upper, lower = rows[number - 1], rows[number]
    grouped = {c for r0, c0, r1, c1 in merged if r0 <= number <= r1 < number + 1 and c1 > c0 for c in range(c0, c1 + 1)}
    below = _fields(lower)
    if not below:
        return None
    for index, value in enumerate(lower, start=1):
        if text(value) == "":
            continue
        over = upper[index - 1] if index <= len(upper) else None
        if index not in grouped and text(over):
            return None  # a value under a title of its own: the lower row is data
    columns = {name: i for name, i in found.items() if i not in below.values()}
    for name, i in below.items():
        columns.setdefault(name, i)
    width = max(len(upper), len(lower))
    titles = tuple(lower[i] if i < len(lower) and text(lower[i]) else upper[i] if i < len(upper) else None
                   for i in range(width))
    header = _Header(number, number + 1, columns, titles)
    return header if header.score > sum(1 for f in FIELDS if f in found) else None


def _is_label(value: Cell) -> bool:
    """Does the cell start with a header-field label (单位：…, 报送人, 联系电话：…)?"""
    if not isinstance(value, str):
        return False
    value = value.strip()
    if value[:1] not in _LABEL_HEADS:
        return False
    return bool(_LABEL.match(value)) or len(value) <= 20 and _bare_label(value) in _LABELS


def _bare_label(value: Cell) -> str:
    return re.sub(r"\([^)]*\)", "", norm(value)).rstrip(":")


def _after(cells: tuple, i: int) -> Cell:
    """The value that follows a label: the next non-empty cell, unless that is another label."""
    value = next((c for c in cells[i + 1:] if text(c)), None)
    return None if _is_label(value) else value


def _filled_in(value: str) -> str:
    """What was written after a label; "" for a blank form line such as ____ or “  年  月  日”."""
    value = value.strip(" \t\r\n\u3000_＿")
    return "" if re.fullmatch(r"[\s年月日_＿]*", value) else value


def _read_labels(row: tuple, found: dict[str, Cell]) -> None:
    """单位/报送人/报送日期 in one row: after the colon, in the next cell, or several in one cell."""
    for i, value in enumerate(row):
        if not isinstance(value, str):
            continue
        marks = list(_LABEL.finditer(value))
        if not marks:
            key = _LABELS.get(_bare_label(value))
            if key and key not in found and (nxt := _after(row, i)) is not None:
                found[key] = nxt
            continue
        for j, m in enumerate(marks):
            key = _LABELS.get(re.sub(r"\s", "", m.group(1)))
            if key is None or key in found:
                continue
            said = _filled_in(value[m.end(): marks[j + 1].start() if j + 1 < len(marks) else len(value)])
            if not said and j + 1 == len(marks):
                said = _after(row, i)
            if said is not None and text(said):
                found[key] = said


def _is_nil_text(value: Cell) -> bool:
    t = norm(value).rstrip("。.!！")
    if t in _PLACEHOLDERS:
        return True
    head = _NIL_HEAD.match(t)
    return bool(head) and len(t) <= 50 and not _NOT_NIL.search(t) \
        and bool(_NIL_TOPIC.search(t) or _NIL_PERIOD.match(t) or head.end() == len(t))


def _says_nil(value: Cell) -> bool:
    """A nil statement anywhere in a cell or paragraph, but not an instruction quoting one."""
    t = norm(value)
    if not 0 < len(t) <= 120 or _NOTE.match(t) or re.search(r"[“”\"]|填写", t):
        return False
    return (_is_nil_text(t) and t not in _PLACEHOLDERS) or (bool(_NIL_SENTENCE.search(t)) and not _NOT_NIL.search(t))


def _is_instructions(sheet: Sheet) -> bool:
    return bool(_INSTRUCTION_SHEET.search(sheet.name.rpartition(":")[2]))


def _wrong_template() -> Rejected:
    return Rejected([Problem(
        "wrong_template",
        "附件中未找到情况清单的表头（应包含“市场主体（自然人）名称”“行政管理事项名称”“日期”"
        "“使用信用记录或报告情况”“使用的激励或惩戒措施”等列）。请使用随本回执附上的空白模板填写后重新发送。",
    )], attach_template=True)


_EN_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_EN_MONTH = re.compile(r"^(?:(\d{4})[._-]?)?(jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
                       r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?(?:[._-]?(\d{4}))?$")
_CN_MONTH = re.compile(r"^(十[一二]?|[一二三四五六七八九])月份?$")
_CN_NUMBERS = {"一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10, "十一": 11, "十二": 12}


def sheet_month(name: str) -> tuple[int | None, int] | None:
    """The month a sheet's name stands for, (year or None, month): 11月, 2026年11月, 2026.11, 十一月,
    Nov, November 2026. A sheet read from an archive is named "file:sheet": only the sheet counts."""
    t = norm(name.rpartition(":")[2]).lower()
    if not t:
        return None
    if found := dates.period_of(t):
        return found
    if m := _CN_MONTH.match(t):
        return None, _CN_NUMBERS[m.group(1)]
    if m := _EN_MONTH.match(t):
        year = m.group(1) or m.group(3)
        return (int(year) if year else None), _EN_MONTHS.index(m.group(2)[:3]) + 1
    return None


def _in_year(found: tuple[int | None, int], period: str) -> str:
    """A sheet's month as YYYY-MM: a year-less month is the nearest such month not after `period`."""
    year, month = found
    if year is None:
        ref_year, ref_month = map(int, period.split("-"))
        year = ref_year if month <= ref_month else ref_year - 1
    return f"{year:04d}-{month:02d}"


@dataclass
class _Candidate:
    rank: int
    sheet: Sheet
    header: _Header
    fallback: bool  # hidden or instructions: only when nothing else will do
    _read: Checklist | None = None

    @property
    def checklist(self) -> Checklist:
        if self._read is None:
            self._read = _read_table(self.sheet, self.header)
        return self._read

    @property
    def filled(self) -> bool:
        return bool(self.checklist.rows) or self.checklist.nil_report

    def month(self, period: str | None) -> str | None:
        found = sheet_month(self.sheet.name)
        return _in_year(found, period) if found and period else None

    def dated_in(self, month: str) -> int:
        """How many rows carry a date in `month` (YYYY-MM)."""
        year = int(month[:4])
        return sum(1 for r in self.checklist.rows
                   if (d := dates.parse_date(r.cells.get("date"), default_year=year).date) and f"{d:%Y-%m}" == month)


def parse(workbook: Workbook, period: str | None = None, firm: bool = False) -> Checklist:
    """Find the table and read it; raises Rejected when no sheet holds the checklist.

    Several sheets with a table (a workbook kept for the year, one sheet a month): the sheet named
    for `period` (YYYY-MM), else the sheet open when the file was saved, else the one whose rows
    are dated in `period`, else the fullest table. `firm` says the period is the one the mail
    subject names; otherwise it is only the month the mail came in, and a sheet named for another
    month may be a late filing: its own month then becomes the period (`Checklist.period`).
    """
    # Instruction sheets and hidden ones (old months, lookup lists) only when nothing else will do.
    order = sorted(enumerate(workbook.sheets), key=lambda s: (s[1].hidden or _is_instructions(s[1]), s[0]))
    candidates = []
    for rank, (_, sheet) in enumerate(order):
        header = _find_header(sheet.rows, sheet.merged)
        if header:
            candidates.append(_Candidate(rank, sheet, header, sheet.hidden or _is_instructions(sheet)))
    if not candidates:
        return _nil_without_table(order)
    primary = [c for c in candidates if not c.fallback] or candidates
    chosen, reason = _choose(primary, period, firm) if len(primary) > 1 else (_best(candidates), "only")
    checklist = chosen.checklist
    checklist.sheets, checklist.sheet_reason = len(primary), reason
    named = chosen.month(period)
    if named and named != period:
        in_named, in_period = chosen.dated_in(named), chosen.dated_in(period)
        trusted = in_named > in_period or sum(1 for c in primary if c.month(period)) > 1 and not in_period
        if firm and in_named > in_period:
            checklist.problems.append(Problem(
                "sheet_other_month",
                f"附件中没有{_zh(period)}的工作表，系统读取的工作表“{chosen.sheet.name}”从名称和日期看是{_zh(named)}的清单，"
                f"与本次报送所属的{_zh(period)}不一致。请发送{_zh(period)}的清单；如确为{_zh(named)}的补报，"
                f"请在邮件主题中注明“{_zh(named)}”后重新发送。", sheet=chosen.sheet.name))
        elif not firm and trusted:
            checklist.period = named
    elif named:
        checklist.period = named
    return checklist


def _zh(period: str) -> str:
    return f"{int(period[:4])}年{int(period[5:])}月"


def _best(candidates: list[_Candidate]) -> _Candidate:
    """The fullest table, a filled one before an empty one, the first on a tie."""
    return min(candidates, key=lambda c: (c.fallback, -c.header.score, not c.filled, c.rank))


def _choose(candidates: list[_Candidate], period: str | None, firm: bool) -> tuple[_Candidate, str]:
    if period:
        same = [c for c in candidates if c.month(period) == period and (firm or c.filled)]
        if same:
            return _best(same), "period"
        if firm:  # a sheet named for another month only when no other sheet has a table
            candidates = [c for c in candidates if not c.month(period)] or candidates
    active = [c for c in candidates if c.sheet.active and c.filled]
    if active:
        return active[0], "active"
    if period:
        counted = [(c.dated_in(period), c) for c in candidates]
        most = max(n for n, _ in counted)
        if most:
            return _best([c for n, c in counted if n == most]), "dates"
    return _best(candidates), "best"


def _read_table(sheet: Sheet, header: _Header) -> Checklist:
    """The checklist on one sheet whose header was found."""
    header_row, columns = header.row, header.columns
    checklist = Checklist(sheet=sheet.name, header_row=header_row, columns=columns, header_top=header.top)
    body, footer, nil = _body(sheet, header, checklist.extra_columns)
    above = sheet.rows[: header.top - 1]
    _set_header_fields(checklist, above + footer)
    if nil:
        checklist.nil_report = True
        return checklist
    if not body and any(_says_nil(v) for r in above + footer for v in r):
        checklist.nil_report = True  # the sentence stands above or below an empty table
        return checklist
    checklist.rows = body
    for name in FIELDS:
        if name not in columns:
            checklist.problems.append(Problem(
                "missing_column", f"表头缺少“{FIELD_TITLES[name]}”列，请按模板补齐该列后重新发送。",
                sheet=sheet.name, row=header_row))
    return checklist


def _set_header_fields(checklist: Checklist, rows: list[tuple]) -> None:
    found: dict[str, Cell] = {}
    for row in rows:
        _read_labels(row, found)
    checklist.unit = text(found.get("unit"))
    checklist.submitter = text(found.get("submitter"))
    checklist.report_date = found.get("report_date")


def _title(value: Cell) -> str:
    """A header cell as one line: Alt+Enter breaks and the spaces that stretch a Chinese title
    (备 注) are dropped; words of other scripts keep one space between them."""
    said = text(value)
    return "".join(said.split()) if _CJK.search(said) else " ".join(said.split())


def _extra_keys(titles: tuple, known: set[int], width: int) -> dict[int, str]:
    """Column index -> its key in Row.extras: the header text (made unique), else the letter."""
    keys: dict[int, str] = {}
    for i in range(1, width + 1):
        if i not in known:
            title = _title(titles[i - 1]) if i <= len(titles) else ""
            unique = title and title not in keys.values()
            keys[i] = title if unique else f"{title}（{get_column_letter(i)}列）" if title else get_column_letter(i)
    return keys


def _body(sheet: Sheet, header: _Header, extra_columns: dict[str, int]) -> tuple[list[Row], list[tuple], bool]:
    """Data rows under the header; notes, a column-number row and footer rows are set apart.
    Also says whether every data row only says there was nothing to report (a nil report),
    and fills `extra_columns` (Row.extras key -> column index)."""
    header_row, columns = header.row, header.columns
    wanted = [(name, i - 1) for name, i in columns.items() if name != "seq"]
    width = max(map(len, sheet.rows[header_row - 1:]), default=0)
    keys = _extra_keys(header.titles, set(columns.values()), width)
    extra_columns.update((key, i) for i, key in keys.items())
    body: list[Row] = []
    footer: list[tuple] = []
    in_footer, nil = False, True
    down = _merged_down(sheet, header_row)
    for row_no, row in enumerate(sheet.rows[header_row:], start=header_row + 1):
        if row_no in down:
            row = tuple(down[row_no].get(i, v) for i, v in enumerate(row + (None,) * (width - len(row))))
        filled = [v for v in row if v is not None and (not isinstance(v, str) or v.strip())]
        if not filled:
            continue
        first = filled[0]
        if isinstance(first, str) and (_is_label(first) or (_NOTE.match(first.strip()) and len(filled) <= 2)) \
                or in_footer and len(filled) <= 1:
            in_footer = True
            footer.append(row)
            continue
        if len(filled) >= 3 and all(_NUMBERING.match(text(v)) for v in filled) and row_no == header_row + 1:
            continue  # the "1 2 3 4 5" row some templates put under the header
        cells = {name: row[i] if i < len(row) else None for name, i in wanted}
        says_nil = nil and _is_nil_row(row)
        if not any(text(v) for v in cells.values()) and not says_nil:
            continue  # only a 序号 or stray text outside the table (a nil sentence may stand there)
        nil = says_nil
        extras = {keys[i]: text(v) for i, v in enumerate(row, start=1) if i in keys and text(v)}
        body.append(Row(row_no=row_no, cells=cells, extras=extras))
    return body, footer, bool(body) and nil


def _merged_down(sheet: Sheet, header_row: int) -> dict[int, dict[int, Cell]]:
    """Row -> {column index: value} for cells under a vertical merge in the table (the same
    company over two rows): a merged cell's value stands in its top-left cell only."""
    down: dict[int, dict[int, Cell]] = {}
    for r0, c0, r1, _c1 in sheet.merged:
        if r1 > r0 > header_row and r0 <= len(sheet.rows) and c0 <= len(sheet.rows[r0 - 1]):
            for r in range(r0 + 1, min(r1, len(sheet.rows)) + 1):
                down.setdefault(r, {})[c0 - 1] = sheet.rows[r0 - 1][c0 - 1]
    return down


def _is_nil_row(row: tuple) -> bool:
    """One row saying there was nothing to report (merged, or in every cell; a 序号 aside)."""
    said = [v for v in row if text(v) and not _NUMBERING.match(text(v))]
    return bool(said) and all(_is_nil_text(v) for v in said)


def _nil_without_table(order: list[tuple[int, Sheet]]) -> Checklist:
    """No table anywhere: a letter or a sheet that only says nothing happened this month."""
    for _, sheet in order:
        if _is_instructions(sheet) or sheet.hidden:
            continue
        if any(_says_nil(v) for row in sheet.rows for v in row if isinstance(v, str)):
            checklist = Checklist(sheet=sheet.name, header_row=0, columns={}, nil_report=True)
            _set_header_fields(checklist, sheet.rows)
            return checklist
    raise _wrong_template()
