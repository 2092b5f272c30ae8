"""The event loop each transport runs on a thread of its own: uvloop's where it is installed
(less of the loop thread's time per call), asyncio's own elsewhere."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Coroutine

try:
    import uvloop
except ImportError:  # no wheel for this platform (32-bit Pi OS): asyncio's loop serves
    uvloop = None


class LoopThread:
    """An event loop running on a thread of its own; `run` hands it a coroutine."""

    def __init__(self, name: str):
        self.loop = uvloop.new_event_loop() if uvloop is not None else asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
        self.loop.close()

    def run(self, coroutine: Coroutine) -> concurrent.futures.Future:
        """Run `coroutine` on the loop (from any thread); its future."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def stop(self) -> None:
        """Stop the loop, and wait for its thread unless called on it."""
        with contextlib.suppress(RuntimeError):  # already closed
            self.loop.call_soon_threadsafe(self.loop.stop)
        if self._thread is not threading.current_thread():
            self._thread.join()
