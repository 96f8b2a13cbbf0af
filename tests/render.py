"""Documents as a person sees them: LibreOffice converts to PDF, poppler reads the pages back.

Used by the slow render check (tests/test_render.py) and by tools/render_documents.py, which
also draws PNGs to look at. Each conversion runs with a private LibreOffice profile, so two
runs at once do not share (or lock) one, and under a deadline for the whole conversion.
The office's fonts (仿宋_GB2312, 方正小标宋简体, ...) are Windows fonts: here fontconfig stands in
the Noto CJK faces of the same kind (a 宋 for 宋/仿宋/楷, a 黑 for 黑体), so the pages look like
the office's rather than all in one sans.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

SOFFICE = shutil.which("soffice") or shutil.which("libreoffice")
POPPLER = shutil.which("pdftotext") and shutil.which("pdfinfo") and shutil.which("pdftoppm")
MISSING = None if SOFFICE and POPPLER else (
    "the render check needs LibreOffice and poppler: apt-get install --no-install-recommends "
    "libreoffice-calc libreoffice-writer fonts-noto-cjk poppler-utils (.ci/run installs them)")
SECONDS = 240  # a cold LibreOffice start on a loaded machine takes a while
SERIF, SANS = "Noto Serif CJK SC", "Noto Sans CJK SC"
STAND_INS = {"仿宋_GB2312": SERIF, "仿宋": SERIF, "楷体_GB2312": SERIF, "楷体": SERIF, "宋体": SERIF,
             "方正小标宋简体": SERIF, "黑体": SANS, "等线": SANS}
FONTS_CONF = """<?xml version="1.0"?>
<!DOCTYPE fontconfig SYSTEM "fonts.dtd">
<fontconfig>
  <include ignore_missing="yes">/etc/fonts/fonts.conf</include>
{aliases}
  <match target="pattern"><test name="family"><string>方正小标宋简体</string></test>
    <edit name="weight" mode="assign"><const>bold</const></edit></match>
</fontconfig>
"""


def to_pdf(document: Path, out_dir: Path) -> Path:
    """`document` converted to PDF in `out_dir`."""
    with tempfile.TemporaryDirectory(prefix="mailbot-lo-") as profile:
        fonts = Path(profile) / "fonts.conf"
        fonts.write_text(FONTS_CONF.format(aliases="\n".join(
            f'  <alias binding="same"><family>{name}</family><prefer><family>{face}</family></prefer></alias>'
            for name, face in STAND_INS.items())), encoding="utf-8")
        subprocess.run([SOFFICE, f"-env:UserInstallation=file://{profile}", "--headless", "--norestore",
                        "--convert-to", "pdf", "--outdir", str(out_dir), str(document)],
                       check=True, capture_output=True, timeout=SECONDS,
                       env={**os.environ, "FONTCONFIG_FILE": str(fonts)})
    pdf = out_dir / (document.stem + ".pdf")
    if not pdf.exists():
        raise RuntimeError(f"LibreOffice wrote no PDF for {document.name}")
    return pdf


def page_texts(pdf: Path) -> list[str]:
    """The text of each page, laid out as printed."""
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], check=True, capture_output=True,
                          timeout=60).stdout.decode()
    return text.split("\f")[:-1]


def page_sizes(pdf: Path) -> list[tuple[float, float]]:
    """(width, height) of each page in millimetres."""
    info = subprocess.run(["pdfinfo", "-f", "1", "-l", "9999", str(pdf)], check=True, capture_output=True,
                          timeout=60).stdout.decode()
    sizes = []
    for line in info.splitlines():
        if line.startswith("Page") and "size:" in line:
            width, height = line.split("size:")[1].split("pts")[0].split("x")
            sizes.append((round(float(width) * 25.4 / 72), round(float(height) * 25.4 / 72)))
    return sizes


def to_png(pdf: Path, out_dir: Path, dpi: int = 60) -> list[Path]:
    """One PNG per page, `<stem>-<n>.png`."""
    subprocess.run(["pdftoppm", "-png", "-r", str(dpi), str(pdf), str(out_dir / pdf.stem)], check=True,
                   capture_output=True, timeout=SECONDS)
    return sorted(out_dir.glob(f"{pdf.stem}-*.png"))
