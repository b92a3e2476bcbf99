"""tools/ratelimit.py: slots taken from a shared schedule, waited for on the
local clock, re-taken when the sender wakes up too late."""

import threading
import time

import pytest

from bj_api_sync.tools import ratelimit


class Schedule:
    """A schedule as the database keeps it (next free time), on a fake clock
    that moves only when somebody sleeps."""

    def __init__(self, interval):
        self.interval = interval
        self.now = 0.0
        self.next_at = 0.0
        self.started = []
        self.lock = threading.Lock()

    def reserve(self):
        with self.lock:
            slot = max(self.next_at, self.now)
            self.next_at = slot + self.interval
            return slot - self.now

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_interval_for():
    assert ratelimit.interval_for(0) == 0.0
    assert ratelimit.interval_for(-1) == 0.0
    assert ratelimit.interval_for(20) == pytest.approx(1.05 / 20)
    # a sender up to TOLERANCE late still keeps any second within the rate
    for rate in (0.5, 1, 5, 20, 100, 1000):
        interval = ratelimit.interval_for(rate)
        late = ratelimit.allowed_lateness(interval)
        assert late > 0
        assert (1 + late) / interval < max(rate, 1)


def test_slots_are_spaced():
    schedule = Schedule(0.05)
    gate = ratelimit.SlotGate(
        schedule.reserve, 0.05, clock=schedule.clock, sleep=schedule.sleep
    )
    starts = []
    for _i in range(10):
        gate()
        starts.append(schedule.now)
    assert starts == pytest.approx([i * 0.05 for i in range(10)])
    assert gate.slots == 10
    assert gate.waited == pytest.approx(0.45)


def test_late_wake_up_takes_a_new_slot():
    schedule = Schedule(0.1)
    overslept = []

    def sleep(seconds):
        # the first sleep oversleeps by 0.5 s (a busy machine)
        schedule.now += seconds + (0.5 if not overslept else 0.0)
        overslept.append(seconds)

    schedule.next_at = 0.3  # somebody else holds the next 3 slots
    gate = ratelimit.SlotGate(schedule.reserve, 0.1, clock=schedule.clock, sleep=sleep)
    gate()
    # slot 0.3 was missed (woke at 0.8): a fresh slot at 0.8 is used instead
    assert gate.slots == 2
    assert schedule.now == pytest.approx(0.8)
    assert schedule.next_at == pytest.approx(0.9)


def test_no_wait_when_schedule_is_free():
    schedule = Schedule(0.1)
    schedule.now = 5.0
    slept = []
    gate = ratelimit.SlotGate(
        schedule.reserve, 0.1, clock=schedule.clock, sleep=slept.append
    )
    assert gate() == 0.0
    assert slept == []


def test_real_threads_respect_the_rate():
    """Four threads share one schedule on the real clock: the starts are at
    least one interval apart, and no sliding second holds more than the rate."""
    interval = ratelimit.interval_for(50)
    lock = threading.Lock()
    state = {"next": time.monotonic()}

    def reserve():
        with lock:
            now = time.monotonic()
            slot = max(state["next"], now)
            state["next"] = slot + interval
            return slot - now

    starts = []

    def work():
        gate = ratelimit.SlotGate(reserve, interval)
        for _i in range(15):
            gate()
            with lock:
                starts.append(time.monotonic())

    threads = [threading.Thread(target=work) for _t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    starts.sort()
    assert len(starts) == 60
    worst = max(sum(1 for t in starts if first <= t < first + 1.0) for first in starts)
    assert worst <= 50
    assert starts[-1] - starts[0] == pytest.approx(59 * interval, rel=0.2)
