"""The report printed to PDF (headless Chromium, hack/browser.sh): read back with poppler as a reader would,
the Chinese department names and the figures are text on the page, and the first page renders to pixels.
CITYHUB_RENDER_REPORT=docs/img/report-page.png also writes that page for docs/report.md.

The figures are the unit tests' fixed query results (tests/unit/test_report.py); the dashboard's integration
test prints the same PDF from a real Prometheus through `cityhub report --format pdf`.
"""

# ruff: noqa: RUF001  (Chinese text uses full-width punctuation)

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from cityhub import browser
from cityhub.report import render_pdf
from tests.unit.test_report import report

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        browser.find() is None or shutil.which("pdftotext") is None,
        reason="headless Chromium, CJK fonts and poppler-utils are opt-in: run hack/browser.sh",
    ),
]


def pdf_text(pdf: Path) -> str:
    return subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True, timeout=60
    ).stdout


def test_the_pdf_shows_the_departments_in_chinese_with_their_figures(tmp_path: Path) -> None:
    pdf = render_pdf.write(report(), tmp_path / "cityhub-report-2026-11.pdf")
    assert pdf.read_bytes().startswith(b"%PDF-")
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    assert "841.92 x 594.96 pts (A4)" in info  # A4 landscape: the tables are wide
    text = pdf_text(pdf)
    for words in (
        "示例市城市数字底座运营评价报告",
        "城市概览",
        "需要关注",
        "应急管理局",
        "交通运输局",
        "城市管理局",
    ):
        assert words in text, f"{words} is not text in the PDF (missing CJK font?)"
    # 应急管理局's messaging: 2 ready / 1 down / 0 pending, 99.01 % availability (9.9 of 1000.1 failed
    # probes, rounded to 10 of 1000), the mean rating 3.5 of 2 ratings, and the incident it did not resolve
    words = "".join(text.split())  # table cells wrap: compare without the layout's spaces
    assert "messaging2/1/099.00%4" in words and "3.5/5（2）" in words
    assert "应急管理局·messaging：本期1个事件未解决" in words
    assert "城市管理局dept-chengguan无数据/nodata" in words  # used nothing
    # 成本分摊: the city's 97.00 CNY, 应急管理局's 72.00 of it (74.2 %), and the type the sheet left unpriced
    assert "成本分摊" in text and "成本合计" in text
    assert "应急管理局1,440.0072.0074.2%" in words and "97.00" in words
    assert "identity（10.00组件时）" in words
    # pdftoppm: the first page renders, and is not blank
    subprocess.run(
        ["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "1", str(pdf), str(tmp_path / "page")],
        check=True, timeout=60,
    )  # fmt: skip
    (png,) = tmp_path.glob("page*.png")
    assert png.stat().st_size > 20_000, "a blank first page"
    if target := os.environ.get("CITYHUB_RENDER_REPORT"):  # docs/report.md's picture of the first page
        subprocess.run(
            ["pdftoppm", "-png", "-r", "90", "-singlefile", "-f", "1", "-l", "1",
             str(pdf), target.removesuffix(".png")],
            check=True, timeout=60,
        )  # fmt: skip
