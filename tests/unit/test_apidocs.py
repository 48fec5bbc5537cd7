"""The committed API reference is the one the schemas generate."""

from __future__ import annotations

from pathlib import Path

from cityhub_operator import apidocs

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "api-reference.md"
REGENERATE = ".venv/bin/python -m cityhub_api.apidocs > docs/api-reference.md"


def test_api_reference_is_generated_from_the_current_schemas() -> None:
    assert REFERENCE.read_text(encoding="utf-8") == apidocs.render(), f"stale: run `{REGENERATE}`"


def test_reference_documents_every_request_kind_and_its_fields() -> None:
    text = apidocs.render()
    assert "## MessagingChannel (messaging)" in text and "`spec.shareWith`" in text
    assert "`spec.deletionPolicy` | `Delete` \\| `Orphan`" in text
