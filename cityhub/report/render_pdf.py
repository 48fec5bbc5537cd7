"""The report as PDF: its HTML page (render_html) printed by headless Chromium with the CJK fonts of
hack/browser.sh, so department names print in Chinese; A4 landscape, the department tables' width."""

from __future__ import annotations

import tempfile
from pathlib import Path

from cityhub import browser
from cityhub.report import render_html
from cityhub.report.model import Report

PRINT_CSS = """<style>
@page{size:A4 landscape;margin:12mm}
@media print{body{margin:0;max-width:none;font-size:10pt}table{font-size:8pt}h3,tr{break-inside:avoid}
*{-webkit-print-color-adjust:exact;print-color-adjust:exact}}
</style>"""


def printable(report: Report) -> str:
    """The report's page with the print rules (page size, margins, smaller tables) added."""
    return render_html.render(report).replace("</head>", f"{PRINT_CSS}</head>", 1)


def write(report: Report, pdf: Path) -> Path:
    """Print the report to `pdf`; raises browser.BrowserMissing naming hack/browser.sh without Chromium."""
    browser.require()
    with tempfile.TemporaryDirectory(prefix="cityhub-report-") as tmp:
        page = Path(tmp) / f"cityhub-report-{report.period.label}.html"
        page.write_text(printable(report), encoding="utf-8")
        return browser.print_to_pdf(page, pdf)
