"""Write the REST API's OpenAPI document: ``python scripts/openapi.py viewer/openapi.json``.

The document is that of a fresh app on a temporary archive (the routes do not depend on the
archive's contents). ``npm run openapi`` in ``viewer/`` runs this and generates the TypeScript
types from it; ``npm run build`` checks both committed files against a fresh run.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from radsight.api.app import create_app
from radsight.api.openapi import openapi_document
from radsight.archive import Archive
from radsight.config import Settings


def document_text() -> str:
    """The document as the committed file holds it: indented JSON, one final newline."""
    with tempfile.TemporaryDirectory(prefix="radsight-openapi-") as home:
        archive = Archive.open(Settings(home=Path(home), database_url=None, ai_builtin_models=False))
        try:
            doc = openapi_document(create_app(archive))
        finally:
            archive.close()
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/openapi.py OUTPUT.json")
    Path(sys.argv[1]).write_text(document_text(), encoding="utf-8")
