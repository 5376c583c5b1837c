"""Per-photo work spread over the cores on threads.

OpenCV, Pillow and NumPy's array loops let go of the GIL while they work, so threads share
the cores without the copies and start-up of processes. One place decides how many.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

# Work that holds a whole decoded photo (taking photos in, capture QA) runs at most this many
# at once: a 48 MP phone photo is ~150 MB, and a many-core server must not hold dozens.
PHOTOS_AT_ONCE = 4


def available_cores() -> int:
    """The cores this process may run on (a container's or `taskset`'s share, not the host's)."""
    return len(os.sched_getaffinity(0))


def each_photo(function: Callable, *per_photo: Iterable, most: int | None = None) -> Iterator:
    """`function` over the photos (one argument from each of `per_photo`, like `map`), on a
    thread per available core (at most `most`), results in photo order as they come.

    Closing the iterator early (wrap it in `contextlib.closing` where a loop may break or
    raise), or an error in `function`, cancels the photos not started; those under way finish
    first, so the caller's clean-up never races a thread still writing.
    """
    columns = [list(values) for values in per_photo]
    workers = min(len(columns[0]) if columns else 1, available_cores(), most or available_cores())
    if workers <= 1:
        yield from map(function, *columns)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(function, *columns)
