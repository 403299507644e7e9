"""An injected clock for moto's SQS: queue time can be moved forward, so that a visibility
timeout (minutes on the real stack) or a message's delay passes at once in a test, without
sleeping and without changing the stack's settings.

`install()` replaces the clock functions moto's SQS models imported with ones that add an
offset; `advance(seconds)` grows it; `offset()` reads it. Only SQS sees the offset: every
other service keeps real time. scripts/moto_server.py serves it as `POST /_herald/clock`
(`{"advance_secs": N}`) and `GET /_herald/clock`.
"""

import threading

from moto.core import utils as core_utils
from moto.sqs import models as sqs_models

_lock = threading.Lock()
_offset_secs = 0.0


def offset():
    """Seconds queue time is ahead of real time."""
    with _lock:
        return _offset_secs


def advance(seconds):
    """Moves queue time forward by `seconds` (never back). Returns the new offset."""
    global _offset_secs
    if seconds < 0:
        raise ValueError("queue time only moves forward")
    with _lock:
        _offset_secs += seconds
        return _offset_secs


def _unix_time(dt=None):
    if dt is not None:
        return core_utils.unix_time(dt)
    return core_utils.unix_time() + offset()


def _unix_time_millis(dt=None):
    return _unix_time(dt) * 1000.0


def install():
    """Points moto's SQS at the offset clock (idempotent)."""
    sqs_models.unix_time = _unix_time
    sqs_models.unix_time_millis = _unix_time_millis
