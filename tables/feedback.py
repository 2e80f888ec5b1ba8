"""The ``feedback`` table: "Not an incident" records per service (Faust wiring only).

Keyed by service (raw UTF-8), like ``series_index``: written by ``agents.feedback``
while processing a record of the service-keyed ``autopilot.feedback`` topic, so its
partitions follow the service-keyed topics and the metrics agent, which reads it for
the service of each record, finds it on its own worker (co-partitioned). Changelogged
(``<app id>-feedback-changelog``): feedback survives restarts and takeovers. The name
is a persisted contract: renaming it is a migration.
"""

from __future__ import annotations

from autopilot.tables import JSONTable, rocksdb_options

from autopilot.app import app

FEEDBACK = "feedback"

feedback: JSONTable = app.Table(
    FEEDBACK,
    key_type=bytes,
    default=None,
    options=rocksdb_options(),
    help="service → autopilot.feedback.FeedbackState.to_dict(): {'records': [{'series', "
    "'service', 'direction' (up/down), 'z_score' (|z|), 'deviation_percent' (|%| or null), "
    "'time_of_day_s' (s since midnight UTC or null), 'user', 'recorded_at' and 'until' "
    "(wall-clock epoch s; until null: for good), 'incident'}], 'offsets': {stream: offset}}",
)
