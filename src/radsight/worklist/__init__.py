"""The AI-prioritised reading worklist.

- ``priority.py``: the rules (order priority, AI urgency thresholds, aging) -> level, score, reason
- ``service.py``: each study's workflow row: arrival (ingest hook), AI refresh (worker hook),
  claim / heartbeat / release / sign, lapsed claims and aging (``sweep``)
- ``events.py``: the append-only event log; ``live.py``: the Server-Sent Events feed over it
- ``alerts.py``: critical-finding alerts and their webhook delivery; ``tasks.py``: the server's
  background thread
- ``query.py``: the worklist as the API shows it; ``turnaround.py``: turnaround metrics
"""
