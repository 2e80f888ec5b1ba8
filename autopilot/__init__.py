"""AI DevOps Autopilot: baselines, anomalies, incidents, LLM analysis and Slack alerts.

Pure domain logic lives in the modules of this package that import neither Faust nor
the network (:mod:`autopilot.detection`, :mod:`autopilot.errorrate`,
:mod:`autopilot.correlation`, :mod:`autopilot.analysis`, :mod:`autopilot.blockkit`,
:mod:`autopilot.models`, :mod:`autopilot.settings`). The Faust app is built in
:mod:`autopilot.app`; its agents live in :mod:`autopilot.agents` and its tables in
:mod:`autopilot.tables`.
"""

__version__ = "0.1.0"
