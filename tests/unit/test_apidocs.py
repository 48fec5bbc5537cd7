"""The committed API reference and component tables are the ones the registry and schemas generate."""

from __future__ import annotations

from pathlib import Path

import pytest

from cityhub_api import apidocs

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "api-reference.md"
REGENERATE = ".venv/bin/python -m cityhub_api.apidocs > docs/api-reference.md"


def test_api_reference_is_generated_from_the_current_schemas() -> None:
    assert REFERENCE.read_text(encoding="utf-8") == apidocs.render(), f"stale: run `{REGENERATE}`"


def test_reference_documents_every_request_kind_and_its_fields() -> None:
    text = apidocs.render()
    assert "## MessagingChannel (messaging)" in text and "`spec.shareWith`" in text
    assert "`spec.deletionPolicy` | `Delete` \\| `Orphan`" in text


@pytest.mark.parametrize("relative", apidocs.TABLE_FILES)
def test_component_tables_list_every_registered_type(relative: str) -> None:
    text = (ROOT / relative).read_text(encoding="utf-8")
    expected = apidocs.with_table(text, apidocs._base(relative))
    regenerate = ".venv/bin/python -m cityhub_api.apidocs --write-tables"
    assert text == expected, f"stale component table: run `{regenerate}`"
