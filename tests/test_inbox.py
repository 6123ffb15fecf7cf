"""The ingester's inbox: what stops paho's thread reading when the main thread falls behind."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from ingest.service import Inbox
from ingest.validate import Received

NOW = datetime(2026, 11, 28, tzinfo=UTC)


def _message(size: int) -> Received:
    return Received("vt/v1/gate-1/event", b"x" * size, NOW)


def _put_in_background(inbox: Inbox, size: int, stopping: threading.Event) -> threading.Thread:
    thread = threading.Thread(target=inbox.put, args=(_message(size), stopping))
    thread.start()
    thread.join(0.3)
    return thread


def test_the_inbox_is_full_by_bytes_and_takes_more_once_some_are_taken() -> None:
    inbox, stopping = Inbox(limit=100, max_bytes=1000), threading.Event()
    inbox.put(_message(600), stopping)
    inbox.put(_message(600), stopping)  # 600 held, under the bound: taken
    assert inbox.full()
    waiting = _put_in_background(inbox, 10, stopping)
    assert waiting.is_alive()  # paho's thread waits, and reads no more
    popped = inbox.pop()
    assert popped is not None and len(popped.payload) == 600
    assert not inbox.full()
    waiting.join(2)
    assert not waiting.is_alive()
    assert len(inbox) == 2


def test_the_inbox_is_full_by_count_and_a_stop_releases_the_waiting_thread() -> None:
    inbox, stopping = Inbox(limit=2, max_bytes=10**9), threading.Event()
    inbox.put(_message(1), stopping)
    inbox.put(_message(1), stopping)
    waiting = _put_in_background(inbox, 1, stopping)
    assert waiting.is_alive()
    stopping.set()  # shutting down: nothing may hang on a full inbox
    waiting.join(2)
    assert not waiting.is_alive()
    while inbox.pop() is not None:
        pass
    assert len(inbox) == 0 and not inbox.full()
