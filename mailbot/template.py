"""The official blank checklist (the notice's 附件), generated so departments get a file ready to fill.

The labels and column titles are module constants: the checklist parser imports them, so the
template the bot sends out and the parser that reads the replies can never drift apart.
"""
from __future__ import annotations

from datetime import date
from io import BytesIO

# openpyxl is imported by the functions that write the template, not here: the parser (in
# every worker) imports the column titles and has no use for it

TITLE = "行政管理事项中使用信用记录和信用报告的情况清单"
HEADER_FIELDS = ("单位", "报送人", "报送日期")
COLUMNS = (
    "市场主体（自然人）名称",
    "行政管理事项名称",
    "日期",
    "使用信用记录或报告情况",
    "使用的激励或惩戒措施",
)
SHEET_NAME = "情况清单"
FILENAME = "情况清单模板.xlsx"  # the blank template as attached to a mail or offered to save
INSTRUCTIONS_SHEET_NAME = "填报说明"
NIL_REPORT = "本月无使用信用记录和信用报告情况"
DEFAULT_OFFICE_NAME = "县信用办"

HEADER_FIELD_ROWS = (2, 3, 4)  # label in column A, value in B (B:C merged)
HEADER_ROW = 6
FIRST_DATA_ROW = 7
DATA_ROWS = 200
LAST_DATA_ROW = FIRST_DATA_ROW + DATA_ROWS - 1
COLUMN_WIDTHS = (32, 28, 14, 40, 28)
DATE_FORMAT = "yyyy-mm-dd"
SUBMIT_DATE_FORMAT = 'yyyy"年"m"月"d"日"'

# Offered in the drop-down only; any other wording is accepted and mapped by the parser.
MEASURE_CHOICES = (
    "无",
    # 守信激励
    "绿色通道", "容缺受理", "告知承诺", "优先办理", "简化程序", "减少检查频次", "信用加分",
    "优先推荐评先评优",
    # 失信惩戒
    "从严审核", "列为重点监管对象", "限制市场准入", "限制参与招投标", "限制参与政府采购",
    "限制财政资金支持", "撤销或限制资质", "限制评先评优", "限制新增项目审批", "不予办理",
)

_FONT = "宋体"


def _fit_to_width(ws, orientation: str) -> None:
    """A4, all columns on one page width, as many pages down as needed."""
    ws.page_setup.orientation = orientation
    ws.page_setup.paperSize = ws.PAPERSIZE_A4
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0
    ws.sheet_properties.pageSetUpPr.fitToPage = True


def _checklist_sheet(ws) -> None:
    """Sheet 1: title, header fields, table header and 200 pre-formatted rows."""
    from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
    from openpyxl.utils import get_column_letter

    thin = Side(style="thin")
    box, underline = Border(left=thin, right=thin, top=thin, bottom=thin), Border(bottom=thin)
    wrap = Alignment(wrap_text=True, vertical="center")
    last_col = get_column_letter(len(COLUMNS))
    ws.merge_cells(f"A1:{last_col}1")
    ws["A1"] = TITLE
    ws["A1"].font = Font(name=_FONT, size=16, bold=True)
    ws["A1"].alignment = Alignment(horizontal="center", vertical="center")
    ws.row_dimensions[1].height = 36

    for row, label in zip(HEADER_FIELD_ROWS, HEADER_FIELDS):
        label_cell = ws.cell(row=row, column=1, value=f"{label}：")
        label_cell.font = Font(name=_FONT, size=12, bold=True)
        label_cell.alignment = Alignment(horizontal="right", vertical="center")
        ws.merge_cells(start_row=row, start_column=2, end_row=row, end_column=3)
        for col in (2, 3):  # a border on every merged cell, or Excel draws only part of the line
            cell = ws.cell(row=row, column=col)
            cell.border = underline
            cell.font = Font(name=_FONT, size=12)
            cell.alignment = Alignment(horizontal="left", vertical="center")
        ws.row_dimensions[row].height = 22
    ws.cell(row=HEADER_FIELD_ROWS[2], column=2).number_format = SUBMIT_DATE_FORMAT

    header_fill = PatternFill("solid", fgColor="D9D9D9")
    for col, (title, width) in enumerate(zip(COLUMNS, COLUMN_WIDTHS), start=1):
        cell = ws.cell(row=HEADER_ROW, column=col, value=title)
        cell.font = Font(name=_FONT, size=11, bold=True)
        cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
        cell.border = box
        cell.fill = header_fill
        ws.column_dimensions[get_column_letter(col)].width = width
    ws.row_dimensions[HEADER_ROW].height = 32

    date_col = COLUMNS.index("日期") + 1
    body_font = Font(name=_FONT, size=11)
    for row in range(FIRST_DATA_ROW, LAST_DATA_ROW + 1):
        for col in range(1, len(COLUMNS) + 1):
            cell = ws.cell(row=row, column=col)
            cell.border = box
            cell.font = body_font
            cell.alignment = wrap
        date_cell = ws.cell(row=row, column=date_col)
        date_cell.number_format = DATE_FORMAT
        date_cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)

    _validations(ws, date_col)
    ws.freeze_panes = ws.cell(row=FIRST_DATA_ROW, column=1).coordinate

    _fit_to_width(ws, "landscape")
    ws.print_title_rows = f"{HEADER_ROW}:{HEADER_ROW}"
    ws.print_options.horizontalCentered = True


def _validations(ws, date_col: int) -> None:
    """Guide, never block: real dates and listed measures are suggested, any text still goes in."""
    from openpyxl.utils import get_column_letter
    from openpyxl.utils.datetime import to_excel
    from openpyxl.worksheet.datavalidation import DataValidation

    date_letter = get_column_letter(date_col)
    dates = DataValidation(
        type="date", operator="between",
        formula1=str(int(to_excel(date(2000, 1, 1)))), formula2=str(int(to_excel(date(2099, 12, 31)))),
        allow_blank=True, errorStyle="warning", showErrorMessage=True, showInputMessage=True,
        promptTitle="日期填写",
        prompt="请填写使用信用记录或信用报告的日期，年、月、日写全，如 2026-11-05 或 2026/11/5，"
               "Excel 会将其存为日期。请不要写成 2026.11.5（Excel 会把它当作文字）。",
        errorTitle="请核对日期",
        error="所填内容不是日期（如 2026.11.5 会被当作文字），建议改为 2026-11-05 或 2026/11/5。"
              "如确认无误，请点击“是”继续。",
    )
    dates.add(f"{date_letter}{FIRST_DATA_ROW}:{date_letter}{LAST_DATA_ROW}")

    choices = ",".join(MEASURE_CHOICES)
    if len(choices) > 255:  # Excel's limit for an inline list; longer lists corrupt the file
        raise ValueError("measure drop-down list exceeds 255 characters")
    measure_letter = get_column_letter(len(COLUMNS))
    measures = DataValidation(
        type="list", formula1=f'"{choices}"', allow_blank=True,
        showErrorMessage=False, errorStyle="information", showInputMessage=True,
        promptTitle="激励或惩戒措施",
        prompt="可从下拉列表中选择，也可直接填写具体措施；未采取措施的，请填写“无”。",
    )
    measures.add(f"{measure_letter}{FIRST_DATA_ROW}:{measure_letter}{LAST_DATA_ROW}")
    ws.add_data_validation(dates)
    ws.add_data_validation(measures)


def instructions(office_name: str | None = None, office_address: str | None = None,
                 deadline_day: int = 25) -> list[str]:
    """The numbered filing instructions, also usable in the body of a reminder mail."""
    name = (office_name or "").strip() or DEFAULT_OFFICE_NAME
    mailbox = f"{name}邮箱"
    if office_address and office_address.strip():
        mailbox += f" {office_address.strip()}"
    quoted = "".join(f"“{c}”" for c in COLUMNS)  # GB/T 15834: no 顿号 between quoted items
    items = [
        "报送单位：各乡镇人民政府、经开区管委会、县直有关部门。",
        f"报送时间：请于每月{deadline_day}日前报送本月情况清单。",
        f"填写位置：请在“{SHEET_NAME}”工作表中填写，并完整填写表头中的"
        + "".join(f"“{f}”" for f in HEADER_FIELDS) + "。",
        f"表格各列依次为{quoted}，请勿增删、调换列或修改列标题。",
        "每使用一次信用记录或信用报告填写一行；市场主体请填写全称（自然人填写姓名），有统一社会信用代码的可一并填写。",
        "“日期”请填写完整的年、月、日，如 2026-11-05 或 2026/11/5，Excel 会将其存为日期；"
        "请不要写成 2026.11.5，Excel 会把它当作文字。",
        "“使用信用记录或报告情况”请写明查询渠道（如“信用中国”“信用石家庄”、政府采购网、"
        "国家企业信用信息公示系统）及查询结果。",
        "“使用的激励或惩戒措施”可从下拉列表中选择，也可直接填写；未采取措施的，请填写“无”。",
        f"当月无相关情况的，请在表格第一行填写“{NIL_REPORT}”，并按时报送。",
        f"报送方式：请将本表（Excel 格式）作为邮件附件发送至{mailbox}，也可直接回复通知邮件；"
        "请勿转换为图片或 PDF。",
        "安全保密：请依法依规保护商业秘密和个人隐私。未经信用信息主体同意，不得将其信用记录、"
        "信用报告及相关内容提供给其他部门、机构或个人；本表只发送至上述邮箱，请勿抄送或转发他人。"
        "身份证号码属于个人信息，非必要请勿填写。",
    ]
    return [f"{i}. {text}" for i, text in enumerate(items, start=1)]


def _instructions_sheet(ws, lines: list[str]) -> None:
    from openpyxl.styles import Alignment, Font

    ws.column_dimensions["A"].width = 100
    ws["A1"] = INSTRUCTIONS_SHEET_NAME
    ws["A1"].font = Font(name=_FONT, size=16, bold=True)
    ws["A1"].alignment = Alignment(horizontal="center", vertical="center")
    ws.row_dimensions[1].height = 32
    for row, line in enumerate(lines, start=2):
        cell = ws.cell(row=row, column=1, value=line)
        cell.font = Font(name=_FONT, size=12)
        cell.alignment = Alignment(wrap_text=True, vertical="top")
    _fit_to_width(ws, "portrait")


def build_template(office_name: str | None = None, office_address: str | None = None,
                   deadline_day: int = 25) -> bytes:
    """The blank checklist as .xlsx bytes, ready to attach to a notice or reminder."""
    if isinstance(deadline_day, bool) or not isinstance(deadline_day, int) or not 1 <= deadline_day <= 31:
        raise ValueError("deadline_day must be a day of the month (1-31)")
    from openpyxl import Workbook

    wb = Workbook()
    sheet = wb.active
    sheet.title = SHEET_NAME
    _checklist_sheet(sheet)
    _instructions_sheet(wb.create_sheet(INSTRUCTIONS_SHEET_NAME),
                        instructions(office_name, office_address, deadline_day))
    wb.active = 0
    wb.properties.title = TITLE
    wb.properties.creator = (office_name or "").strip() or DEFAULT_OFFICE_NAME
    buf = BytesIO()
    wb.save(buf)
    return buf.getvalue()
