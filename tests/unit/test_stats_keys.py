"""The Cluster's per-slot stats keys: their hash tags are computed as authsvc starts."""

from __future__ import annotations

from authsvc.stats import StatsKeys, slot_tags


def test_the_slot_tags_are_computed_when_the_keys_are_made_not_at_a_first_request() -> None:
    """Left to the first request, computing them (16,384 CRC16s) held up that request and
    every other on the event loop: a paused primary's first 503 came 40-85 ms past the
    Redis timeout."""
    slot_tags.cache_clear()
    StatsKeys("canwatch:", per_slot=False)
    assert slot_tags.cache_info().currsize == 0
    keys = StatsKeys("canwatch:", per_slot=True)
    assert slot_tags.cache_info().currsize == 1
    assert keys.for_user("user").startswith("canwatch:{")
    assert slot_tags.cache_info().misses == 1
