"""The event loop each transport runs on: uvloop's (libuv) where it is installed, asyncio's
own elsewhere. Same semantics; per call, uvloop spends less of the loop thread's time on
scheduling, and that thread is what a busy server saturates first."""

from __future__ import annotations

import asyncio

try:
    import uvloop
except ImportError:  # no wheel for this platform (32-bit Pi OS): asyncio's loop serves
    uvloop = None


def new_event_loop() -> asyncio.AbstractEventLoop:
    return uvloop.new_event_loop() if uvloop is not None else asyncio.new_event_loop()
