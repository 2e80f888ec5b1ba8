"""The routine memory: departures that recur at the same time of day are damped (rule
7 of :mod:`autopilot.detection`).

A ring of ``SLOTS_PER_DAY × season_days + 2`` bytes (``season_days`` 3: 290 bytes),
one per 15-minute slot (:data:`SEASON_SLOT_S`) of event time, each the largest raw
score (scales, directional |z| capped at 10) seen in that slot, quantised to a byte
(× :data:`Q_TO_RAW`, rounded up). Raw scores at most ``z_threshold`` cannot make a
sample routine and are not kept; while nothing is kept the ring is empty (a calm
series costs nothing). A sample is routine when, in its own slot or the slots either
side on one of the last ``season_days`` days, a departure beyond ``z_threshold`` and
at least :data:`ROUTINE_RATIO` as large was seen (a nightly job or backup): it does
not alert and its anomaly score is damped as inside an episode. O(days) per sample,
O(1) in the series' length.
"""

from __future__ import annotations

import math

from autopilot.detection.likelihood import RAW_SCORE_CAP

__all__ = [
    "Q_TO_RAW", "ROUTINE_RATIO", "SEASON_SLOT_S", "SLOTS_PER_DAY",
    "load_ring", "remember_and_damp", "ring_length",
]

#: Length of a time-of-day slot of the routine memory (s): 15 minutes.
SEASON_SLOT_S = 900.0
#: Slots per day (86400 / :data:`SEASON_SLOT_S`).
SLOTS_PER_DAY = 96
#: A departure is routine when an earlier one in its slot was at least this fraction
#: of its raw score (NAB subset, standard as shipped: 0.4 → 63.8, 0.5 → 63.4,
#: 0.6 → 62.7; ranked 68.7 for all three).
ROUTINE_RATIO = 0.5
#: Raw score per unit of the routine memory's one-byte quantisation.
Q_TO_RAW = RAW_SCORE_CAP / 255.0


def ring_length(season_days: int) -> int:
    """Bytes of the ring for ``season_days`` days (0: the memory is off)."""
    return SLOTS_PER_DAY * season_days + 2 if season_days > 0 else 0


def load_ring(season: bytes, season_slot: int, ring_len: int) -> tuple[bytearray, int]:
    """The ring to work on and its newest slot, from a state's ``season`` bytes.

    A state without memory, or one made with another ``season_days``, starts afresh
    (an empty ring, newest slot −1).
    """
    if ring_len and len(season) == ring_len:
        return bytearray(season), season_slot
    return bytearray(), -1


def remember_and_damp(
    ring: bytearray, newest: int, ring_len: int, days: int, timestamp: float,
    raw: float, score: float, hot: bool, damp: float, z_threshold: float,
    store_above: float,
) -> tuple[bytearray, int, float, bool]:
    """Advance the ring to the sample's slot, damp a routine sample, remember ``raw``.

    Args:
        ring, newest: the ring (changed in place or replaced) and its newest slot
            (epoch s // :data:`SEASON_SLOT_S`; −1: empty).
        ring_len, days: :func:`ring_length` and ``season_days``.
        timestamp: the sample's event time (epoch s).
        raw: its raw score (scales); ``score`` and ``hot``: its anomaly score and
            whether it may alert so far.
        damp: ``alert_score / 2``; a score below it is left as it is.
        z_threshold: only earlier departures beyond it make a sample routine.
        store_above: ``z_threshold − Q_TO_RAW``; smaller raw scores are not kept.

    Returns:
        ``(ring, newest, score, hot)``: a routine sample's score × ``damp``, not hot.
    """
    slot = int(timestamp // SEASON_SLOT_S)
    if ring and slot > newest:
        if slot - newest >= ring_len:
            ring, newest = bytearray(), -1  # all of it has expired
        else:
            for s in range(newest + 1, slot + 1):
                ring[s % ring_len] = 0
            newest = slot
    if ring:
        oldest = newest - ring_len + 1
        if slot >= oldest and score >= damp:  # below damp: no change
            earlier = 0
            for day in range(1, days + 1):
                centre = slot - SLOTS_PER_DAY * day
                for s in (centre - 1, centre, centre + 1):
                    if s >= oldest and ring[s % ring_len] > earlier:
                        earlier = ring[s % ring_len]
            earlier_raw = earlier * Q_TO_RAW
            if earlier_raw > z_threshold and earlier_raw >= ROUTINE_RATIO * raw:
                score *= damp
                hot = False
    if raw > store_above and (not ring or slot > newest - ring_len):
        # Smaller departures can never make a sample routine: not kept.
        if not ring:
            ring, newest = bytearray(ring_len), slot
        q = math.ceil(raw / Q_TO_RAW)
        i = slot % ring_len
        if q > ring[i]:
            ring[i] = q if q < 255 else 255
    return ring, newest, score, hot
