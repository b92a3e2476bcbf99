"""Keep a configuration's requests under ``rate_limit_per_second`` across every
worker and server sharing the database.

No ``odoo`` import. The schedule lives in the database (one row per
configuration holding the time its next request may start); :class:`SlotGate`
takes a slot from it through ``reserve()`` before each attempt of a request —
quick retries included — and waits until the slot comes. Slots are handed out
one ``interval`` apart, so requests start at most ``1 / interval`` times a
second whoever sends them.

``reserve()`` answers with the delay until the slot *as the database's clock
sees it*: waiting is measured on this process's monotonic clock, so clocks that
differ between servers do not matter. A sender that wakes up too late (a busy
machine, a long garbage collection) would send closer to the next slot than
allowed: past ``tolerance`` × ``interval`` it takes a new slot instead.
"""

import time

#: Slots are this much further apart than 1 / rate, so that a sender waking up
#: a little late never puts more than the rate in a sliding second.
MARGIN = 0.05
#: How late (in intervals, and at most ``LATE_LIMIT`` seconds) a sender may
#: wake up and still use its slot. A second then holds at most ``rate``
#: requests: the slots a second can see, late ones included, span
#: ``1 + lateness`` seconds, fewer than ``rate`` intervals as long as the
#: lateness stays under ``MARGIN`` seconds. Later than that, a new slot is
#: taken (the old one is lost).
TOLERANCE = 0.75
LATE_LIMIT = 0.8 * MARGIN


def allowed_lateness(interval):
    """Seconds a sender may be late for its slot (see :data:`TOLERANCE`)."""
    return min(TOLERANCE * interval, LATE_LIMIT)


#: Give up re-taking slots after this many late wake-ups in a row (send anyway).
MAX_RETAKES = 20


def interval_for(rate):
    """Seconds between two slots for ``rate`` requests a second (0: no limit)."""
    if not rate or rate <= 0:
        return 0.0
    return (1.0 + MARGIN) / float(rate)


class SlotGate:
    """Waits for the next slot of a shared schedule.

    :param reserve: ``reserve() -> seconds to wait`` (may be negative or 0),
        taking one slot of the schedule
    :param interval: seconds between slots (for the lateness check)
    """

    def __init__(self, reserve, interval, clock=time.monotonic, sleep=time.sleep):
        self.reserve = reserve
        self.interval = interval
        self.clock = clock
        self.sleep = sleep
        self.waited = 0.0
        self.slots = 0

    def __call__(self):
        """Take a slot and wait for it; return the seconds waited."""
        waited = 0.0
        for _retake in range(MAX_RETAKES):
            asked = self.clock()
            delay = max(0.0, float(self.reserve()))
            self.slots += 1
            target = asked + delay
            if delay:
                self.sleep(delay)
            now = self.clock()
            waited += now - asked
            if now - target <= allowed_lateness(self.interval):
                break
        self.waited += waited
        return waited
