"""rows_per_request=k in batch mode: one line per pack of k rows, its answer mapped back per row by item id.

A pack's custom id is a digest of its rows' keys; a chunk's key file lists the rows' keys in order, so its packs
are its keys k at a time (only the call's last pack may be short, and it ends its chunk). Collected, each item's
answer is checked as online (engine/packed.py): a row whose item is missing, repeated or invalid is asked again
alone, through the online API in the same run, since a follow-up batch would wait up to a day more for a few rows.
A pack's billed tokens are split over its rows (a row asked again alone adds its share to that answer's tokens).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

from .. import constants
from ..engine.packed import items_of, shares
from ..plan.build import Work
from ..plan.request import Request, Response

PACK_ID = "pk-"  # custom ids of packed lines: within every provider's custom-id rules ([A-Za-z0-9_-], 64 chars)


def pack_id(keys: Sequence[str]) -> str:
    """The custom id of the line that carries these rows (their keys, in order)."""
    return PACK_ID + hashlib.blake2b("\n".join(keys).encode(), digest_size=16).hexdigest()


def packs(positions: Sequence[int], size: int) -> Iterator[list[int]]:
    """The positions, size at a time, in order (the last group may be short)."""
    for start in range(0, len(positions), size):
        yield list(positions[start:start + size])


def packed_requests(work: Work, positions: Sequence[int]) -> Iterator[tuple[list[Request], Request]]:
    """(the rows' requests, the packed request) of each pack of these positions, rendered a chunk at a time."""
    size = work.packing.size
    step = max(size, constants.CHUNK_SIZE // size * size)  # whole packs per chunk: the grouping stays the same
    for start in range(0, len(positions), step):
        requests = work.build(positions[start:start + step])
        for at in range(0, len(requests), size):
            rows = requests[at:at + size]
            yield rows, work.packing.request(rows)


def unpack(work: Work, keys: Sequence[str], found: dict[str, Response], index: dict[str, int]
           ) -> tuple[dict[str, Response], dict[int, tuple[int, int, int, int]]]:
    """A chunk's packed answers as each row's own: {row key: answer} for the rows answered, and
    {position: its share of the pack's tokens} for the rows to ask again alone (a line that failed whole, or
    never came back, is its rows' failure, as an unpacked line's would be)."""
    packing, check = work.packing, work.check
    answered: dict[str, Response] = {}
    alone: dict[int, tuple[int, int, int, int]] = {}
    for group in packs(list(keys), packing.size):
        line = found.get(pack_id(group))
        if line is None or line.error is not None:
            if line is not None:
                answered.update((key, line) for key in group)
            continue
        positions = [index[key] for key in group]
        value, problem = packing.check(line.text)
        items, parsed = items_of(packing, check, value if problem is None else None, len(group))
        for n, (key, j, share) in enumerate(zip(group, positions, shares(packing, work.build(positions), line,
                                                                          items)), 1):
            if n in items:
                answered[key] = Response(items[n], share[0], share[1], line.finish_reason,
                                         cached_input_tokens=share[2], cache_write_tokens=share[3],
                                         parsed=parsed.get(n), batch=True)
            else:
                alone[j] = share
    return answered, alone


def with_share(response: Response, share: tuple[int, int, int, int]) -> Response:
    """An answer asked alone, carrying its row's share of the pack's tokens too."""
    response.input_tokens += share[0]
    response.output_tokens += share[1]
    response.cached_input_tokens += share[2]
    response.cache_write_tokens += share[3]
    return response
