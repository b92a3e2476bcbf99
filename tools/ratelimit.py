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

#: Slots are this much further apart than 1 / rate, so that the small delays
#: between a slot and the request reaching the receiver never add up to more
#: than the rate in a sliding second.
MARGIN = 0.02
#: How late (in intervals) a sender may wake up and still use its slot.
TOLERANCE = 0.25
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
            if now - target <= TOLERANCE * self.interval:
                break
        self.waited += waited
        return waited
