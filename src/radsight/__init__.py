"""RadSight: an AI-first medical imaging platform.

The package layout follows the data flow: ``ingest`` (every entry point) ->
``storage`` (bytes as received) + ``index`` (Patient/Study/Series/Instance) ->
``dicomweb`` / ``dimse`` (query and retrieve) and ``imaging`` (pixels for viewers).
"""

__version__ = "0.1.0"
