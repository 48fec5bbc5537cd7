"""Where kopf keeps its state on a request, hardened against what a department can write there.

kopf keeps two annotations on every request it handles: the spec it last handled (the diff base) and each
handler's progress. A department owns its requests and can write any annotation, so both are untrusted
input here: a value that is not JSON must not stop the operator (kopf's own storages raise on it, forever),
and the department's own annotations must not be copied into the diff base (kopf's default essence keeps
them: a request carrying 150 KB of annotations would then exceed the API server's 256 KiB annotation limit
when kopf stores its diff base, and the request could be neither handled nor deleted).
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from cityhub_api.api import GROUP

log = logging.getLogger(__name__)

DIFF_BASE_KEY = "last-handled-configuration"


class DiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf's annotation diff base without the request's annotations; a forged value reads as absent."""

    def __init__(self) -> None:
        # Annotations never change what the operator provisions: only spec and labels (data grade) do.
        super().__init__(prefix=GROUP, key=DIFF_BASE_KEY, ignored_fields=["metadata.annotations"])

    def fetch(self, *, body: Any) -> Any:
        try:
            return super().fetch(body=body)
        except ValueError:  # json.JSONDecodeError: written by someone else than the operator
            log.warning(
                "ignoring an unreadable %s/%s annotation: handling the request afresh", GROUP, DIFF_BASE_KEY
            )
            return None


class ProgressStorage(kopf.AnnotationsProgressStorage):
    """kopf's per-handler progress annotations; a forged value reads as no progress (the handler runs)."""

    def __init__(self) -> None:
        super().__init__(prefix=GROUP)

    def fetch(self, *, key: Any, body: Any) -> Any:
        try:
            return super().fetch(key=key, body=body)
        except ValueError:
            log.warning("ignoring an unreadable progress annotation of handler %s: running it again", key)
            return None
