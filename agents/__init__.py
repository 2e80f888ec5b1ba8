"""Faust agents, one module per stream stage (installed as ``autopilot.agents``).

Agents are thin glue: decode raw bytes, call the pure core, update tables, send
downstream. Each runs its per-record handler through the one error boundary,
:func:`autopilot.agents.boundary.each_record`: the exception is logged with
``topic[partition]@offset``, the record goes to the dead-letter topic with a reason,
a counter moves and the loop goes on.
"""
