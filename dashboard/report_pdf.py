"""The inspection report as a PDF, from values (inspection.Report), with fpdf2.

fpdf2 (py-pdf/fpdf2, pure Python, maintained) was chosen over ReportLab because it embeds a
subset of an OpenType font with CFF outlines, as Debian's Noto Sans CJK (fonts-noto-cjk, which
scripts/install-system.sh installs) is: ReportLab's TTFont reads TrueType outlines only, and its
built-in CJK fonts (STSong-Light) are not embedded, so a viewer without Adobe's Asian font pack
shows empty boxes. A subset keeps a report of a few pages at about 60-100 KB.
"""

from __future__ import annotations

from pathlib import Path

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from dashboard import fmt
from dashboard.inspection import (
    NOTHING,
    Report,
    by_unit,
    hazard_text,
    units_table,
)
from mapping.frames import rows

TITLE = "出租屋检查报告 Rental housing inspection report"


class FontMissing(RuntimeError):
    """The report's CJK font is not where the settings say (VT_REPORT_FONT)."""


class _Pdf(FPDF):
    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(size=8)
        self.cell(0, 6, f"第 {self.page_no()} 页 Page {self.page_no()} / {{nb}}", align="C")


def pdf_bytes(report: Report, font: Path, bold_font: Path | None = None, index: int = 0) -> bytes:
    """The report as PDF bytes: the building, the inspection (date, inspector, findings,
    hazards, photo references, next visit), the discrepancies grouped by unit with their
    evidence, the 观察不足 note, the units and the earlier inspections. Times are local to
    ``report.zone``; nothing shows as None or NaT.

    ``font`` (and ``bold_font``, else the same): a TrueType/OpenType font or collection with
    CJK glyphs; ``index``: the face within a collection (Noto Sans CJK: 2 is SC, Simplified
    Chinese). Raises FontMissing when a font file does not exist."""
    for path in (font, bold_font):
        if path is not None and not path.is_file():
            raise FontMissing(f"找不到报告字体 report font not found: {path} (set VT_REPORT_FONT)")
    pdf = _Pdf(format="A4")
    pdf.set_auto_page_break(auto=True, margin=16)
    pdf.set_margins(15, 15, 15)
    pdf.add_font("cjk", "", str(font), collection_font_number=index)
    pdf.add_font("cjk", "B", str(bold_font or font), collection_font_number=index)
    pdf.set_title(f"{TITLE} {report.building_id}")
    pdf.set_author(report.prepared_by)
    pdf.set_creator("villagetwin")
    pdf.set_creation_date(report.generated)
    pdf.add_page()
    width = pdf.epw

    def heading(text: str, size: float = 12) -> None:
        pdf.ln(2)
        pdf.set_font("cjk", "B", size)
        pdf.multi_cell(width, size * 0.55, text, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(1)

    def para(text: str, size: float = 9.5, style: str = "") -> None:
        pdf.set_font("cjk", style, size)
        pdf.multi_cell(width, size * 0.5, text, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    heading(TITLE, 16)
    para(
        f"{report.address} · {report.building_id} · {report.storeys} 层 storeys"
        f" · 网格 grid {report.grid_code or NOTHING} · 业主 landlord {report.landlord or NOTHING}"
    )
    para(
        f"生成 Generated {fmt.minutes(report.generated, report.zone.key)} ({report.zone.key})"
        f" · 报告人 Prepared by {report.prepared_by}",
        8.5,
    )

    heading("本次检查 Inspection")
    latest = report.latest
    if latest is None:
        para("尚无检查记录 No inspection recorded yet.")
    else:
        fields = [
            ("检查日期 Date", fmt.day(latest.inspected_on, report.zone.key)),
            ("检查员 Inspector", latest.inspector),
            ("发现 Findings", latest.findings or NOTHING),
            ("隐患 Hazards", hazard_text(latest.hazards)),
            ("照片编号 Photo references", "、".join(latest.photo_refs) or NOTHING),
            ("下次检查 Next visit", fmt.day(latest.next_visit, report.zone.key)),
        ]
        pdf.set_font("cjk", "", 9.5)
        with pdf.table(col_widths=(1, 3), first_row_as_headings=False, line_height=5.5) as t:
            for label, value in fields:
                line = t.row()
                line.cell(label)
                line.cell(value)

    issues = report.findings.issues
    heading(f"异常 Discrepancies ({len(issues)})")
    note = report.findings.note()
    if note:
        para(note, 9, "B")
        pdf.ln(1)
    if not issues:
        para("无异常 No discrepancies.")
    where = {
        str(r.unit_id): f" · {r.floor} 层 floor · {r.room} 室 room"
        for r in rows(report.units)
        if isinstance(r.room, str)
    }
    for unit, found in by_unit(issues):
        para(unit + where.get(unit, ""), 10, "B")
        for d in found:
            pdf.set_x(pdf.l_margin + 4)
            pdf.set_font("cjk", "", 9)
            pdf.multi_cell(width - 4, 4.6, f"• {d.label}: {d.detail}", align="L",
                           new_x=XPos.LMARGIN, new_y=YPos.NEXT)  # fmt: skip
        pdf.ln(0.5)

    heading(f"单元 Units (门禁观察 observed over {report.findings.window_days} 天 days)")
    table = units_table(report.units, issues, report.zone)
    pdf.set_font("cjk", "", 8)
    with pdf.table(
        col_widths=(2.8, 1.3, 1.3, 2.2, 1.6, 3.0, 4.6), line_height=4.4, text_align="LEFT"
    ) as t:
        head = t.row()
        for column in table.columns:
            head.cell(str(column))
        for values in table.itertuples(index=False):
            line = t.row()
            for value in values:
                line.cell(str(value))

    earlier = report.inspections[1:]
    heading(f"检查记录 Earlier inspections ({len(earlier)})")
    if not earlier:
        para("无更早的检查 No earlier inspection.")
    for past in earlier:
        para(
            f"{fmt.day(past.inspected_on, report.zone.key)} · {past.inspector}:"
            f" {past.findings or NOTHING}"
            f" · 隐患 hazards: {hazard_text(past.hazards)}"
            f" · 照片 photos: {'、'.join(past.photo_refs) or NOTHING}"
            f" · 下次 next: {fmt.day(past.next_visit, report.zone.key)}",
            9,
        )
    return bytes(pdf.output())
