"""Graceful stops: the first SIGINT/SIGTERM asks training to stop, a second SIGINT aborts.

The first signal only sets a flag; training checks it after each block of steps, saves a
resumable state and stops (exit 130 for SIGINT, 143 for SIGTERM). A second SIGINT raises
KeyboardInterrupt at once; every file is written atomically, so the last complete
checkpoint stays intact.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class StopRequest:
    """Installs the handlers while active (a context manager); `signum` is the first signal."""

    def __init__(self):
        self.signum: int | None = None
        self.second: int | None = None  # the signal that aborted
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
            return
        self.second = signum
        raise KeyboardInterrupt  # the second signal: stop now

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is not threading.main_thread():
            return self  # Python delivers signals to the main thread only
        for signum in EXIT_CODES:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


class TrainingInterrupted(Exception):
    """Raised from a callback, after the resumable state is saved, to leave `fit` at once."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
