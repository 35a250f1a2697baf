"""The two queue policies: lossless for files, keep-newest for live sources."""

import threading
import time

import pytest

from streamvision.queues import FrameQueue, QueueClosed, QueueTimeout


def test_keep_newest_drops_the_oldest_and_counts() -> None:
    queue = FrameQueue[int](3, keep_newest=True)
    for i in range(10):
        assert queue.put(i)
    assert queue.dropped == 7
    assert [queue.get(0), queue.get(0), queue.get(0)] == [7, 8, 9]


def test_lossless_blocks_the_producer_until_there_is_room() -> None:
    queue = FrameQueue[int](2, keep_newest=False)
    produced: list[int] = []

    def produce() -> None:
        for i in range(5):
            queue.put(i)
            produced.append(i)
        queue.close()

    thread = threading.Thread(target=produce)
    thread.start()
    deadline = time.monotonic() + 5
    while len(produced) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    assert len(produced) == 2  # blocked on the third put
    received = []
    with pytest.raises(QueueClosed):
        while True:
            received.append(queue.get(5))
    thread.join(5)
    assert received == [0, 1, 2, 3, 4]
    assert queue.dropped == 0


def test_put_gives_up_when_stopped() -> None:
    queue = FrameQueue[int](1, keep_newest=False)
    queue.put(0)
    stop = threading.Event()
    stop.set()
    assert queue.put(1, stop) is False
    assert len(queue) == 1


def test_get_times_out_then_sees_the_end() -> None:
    queue = FrameQueue[int](1, keep_newest=False)
    with pytest.raises(QueueTimeout):
        queue.get(0.01)
    queue.put(1)
    queue.close()
    assert queue.put(2) is False
    assert queue.get(0) == 1
    with pytest.raises(QueueClosed):
        queue.get(0)


def test_maxsize_must_be_positive() -> None:
    with pytest.raises(ValueError, match="maxsize"):
        FrameQueue[int](0, keep_newest=True)
