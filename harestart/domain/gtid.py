"""GTID state, one model for both servers. Pure: parsed from the text the servers print.

- **MySQL** (:class:`MysqlGtidSet`): a set of transactions, per source id (a server UUID and,
  since 8.3, an optional tag) a list of numbered intervals: ``uuid:1-10:12,uuid2:1-3`` and,
  tagged, ``uuid:1-10:audit:1-2`` (untagged intervals first, then each tag with its own).
  Held normalised (lower-case, sorted, intervals merged), so equal sets compare equal and
  ``str()`` prints the canonical text MySQL itself prints (except its newline after commas).
- **MariaDB** (:class:`MariadbGtidPos`): a position, one GTID ``domain-server-seq`` per
  replication domain: ``0-1-42,1-2-7``. Sequence numbers grow per domain whichever server
  wrote them.

Operations on both: ``parse`` (``ValueError`` naming the text it cannot read), ``str()``,
``covers`` (the other's transactions are all here), ``-`` (what this has that the other has
not: a candidate's errant transactions are ``candidate - source``), ``|`` and
:attr:`empty`. :func:`parse_gtid`, :func:`gtid_covers` and :func:`gtid_minus` pick the model
by server flavour, for callers that hold the text of either.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from harestart.domain.topology import Flavor

# --- MySQL: GTID sets ------------------------------------------------------------------------

GNO_MAX = 2**63 - 1  # the largest transaction number MySQL gives out
_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
_TAG_RE = re.compile(r"[a-z_][a-z0-9_]{0,31}", re.I)
_INTERVAL_RE = re.compile(r"(\d+)(?:-(\d+))?")


class Interval(NamedTuple):
    """Transaction numbers ``first`` to ``last``, both included (1 <= first <= last)."""

    first: int
    last: int

    def __str__(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"


@dataclass(frozen=True, order=True)
class Sid:
    """Who numbered a transaction: the server UUID and (MySQL 8.3+) a tag, "" when untagged.
    Both lower-case, as the server compares them."""

    uuid: str
    tag: str = ""


Intervals = tuple[Interval, ...]


def _normalise(intervals: Iterable[Interval | tuple[int, int]]) -> Intervals:
    """Sorted, disjoint, non-adjacent intervals covering the same numbers."""
    out: list[Interval] = []
    for first, last in sorted(intervals):
        if out and first <= out[-1].last + 1:
            if last > out[-1].last:
                out[-1] = Interval(out[-1].first, last)
        else:
            out.append(Interval(first, last))
    return tuple(out)


def _minus(have: Intervals, known: Intervals) -> Intervals:
    """The numbers of ``have`` not in ``known`` (both normalised)."""
    out: list[Interval] = []
    for first, last in have:
        lo = first
        for kfirst, klast in known:
            if klast < lo or kfirst > last:
                continue
            if kfirst > lo:
                out.append(Interval(lo, kfirst - 1))
            lo = klast + 1
            if lo > last:
                break
        if lo <= last:
            out.append(Interval(lo, last))
    return tuple(out)


def _check_sid(sid: Sid) -> None:
    if not _UUID_RE.fullmatch(sid.uuid) or sid.uuid != sid.uuid.lower():
        raise ValueError(f"not a lower-case server UUID: {sid.uuid!r}")
    if sid.tag and (not _TAG_RE.fullmatch(sid.tag) or sid.tag != sid.tag.lower()):
        raise ValueError(f"not a lower-case GTID tag: {sid.tag!r}")


@dataclass(frozen=True)
class MysqlGtidSet:
    """A MySQL GTID set: per :class:`Sid`, normalised intervals (no empty entry), sorted by
    UUID then tag ("" first). Build it with :meth:`parse` or :meth:`of`."""

    streams: tuple[tuple[Sid, Intervals], ...] = ()

    def __post_init__(self) -> None:
        for sid, intervals in self.streams:
            _check_sid(sid)
            if any(not 1 <= first <= last <= GNO_MAX for first, last in intervals):
                raise ValueError(f"intervals of {sid} not 1 <= first <= last < 2^63: {intervals}")
            if not intervals or _normalise(intervals) != intervals:
                raise ValueError(f"intervals of {sid} not normalised: {intervals}")
        if [sid for sid, _ in self.streams] != sorted({sid for sid, _ in self.streams}):
            raise ValueError("GTID set streams not sorted or repeated")

    @classmethod
    def of(cls, streams: Mapping[Sid, Iterable[Interval | tuple[int, int]]]) -> MysqlGtidSet:
        """From any intervals per source id (overlapping, unsorted, empty: normalised)."""
        merged = {sid: _normalise(intervals) for sid, intervals in streams.items()}
        return cls(tuple(sorted((sid, iv) for sid, iv in merged.items() if iv)))

    @classmethod
    def parse(cls, text: str) -> MysqlGtidSet:
        """``uuid:1-5:7,uuid2:1-3:audit:1`` (newlines and spaces around parts allowed; ""
        is the empty set). Raises ``ValueError`` naming the part it cannot read."""
        found: dict[Sid, list[Interval]] = {}
        for raw in text.split(","):
            if raw.strip():
                _parse_item(raw.strip(), text, found)
        return cls.of(found)

    def as_dict(self) -> dict[Sid, Intervals]:
        return dict(self.streams)

    @property
    def empty(self) -> bool:
        return not self.streams

    def covers(self, other: MysqlGtidSet) -> bool:
        """Every transaction of ``other`` is in this set (``GTID_SUBSET(other, self)``)."""
        return (other - self).empty

    def __sub__(self, other: MysqlGtidSet) -> MysqlGtidSet:
        """The transactions of this set that ``other`` lacks (``GTID_SUBTRACT``)."""
        known = other.as_dict()
        return MysqlGtidSet.of({sid: _minus(iv, known.get(sid, ())) for sid, iv in self.streams})

    def __or__(self, other: MysqlGtidSet) -> MysqlGtidSet:
        both: dict[Sid, list[Interval]] = {}
        for sid, intervals in (*self.streams, *other.streams):
            both.setdefault(sid, []).extend(intervals)
        return MysqlGtidSet.of(both)

    def __and__(self, other: MysqlGtidSet) -> MysqlGtidSet:
        return self - (self - other)

    def parts(self) -> tuple[str, ...]:
        """One text per server UUID, in MySQL's order: ``uuid:1-5:audit:1``."""
        by_uuid: dict[str, list[str]] = {}
        for sid, intervals in self.streams:
            pieces = by_uuid.setdefault(sid.uuid, [sid.uuid])
            if sid.tag:
                pieces.append(sid.tag)
            pieces.extend(str(i) for i in intervals)
        return tuple(":".join(pieces) for pieces in by_uuid.values())

    def __str__(self) -> str:
        """The canonical text on one line (MySQL prints a newline after each comma)."""
        return ",".join(self.parts())


def _parse_item(item: str, text: str, found: dict[Sid, list[Interval]]) -> None:
    """One comma-separated part: ``uuid[:interval...][:tag:interval[:interval...]]...``."""

    def bad(why: str) -> ValueError:
        return ValueError(f"not a MySQL GTID set: {why} in {item!r} (of {text!r})")

    uuid, *pieces = (p.strip() for p in item.split(":"))
    if not _UUID_RE.fullmatch(uuid):
        raise bad(f"{uuid!r} is not a server UUID")
    if not pieces:
        raise bad("a server UUID without transactions")
    sid, waiting = Sid(uuid.lower()), ""  # waiting: a tag named, no interval after it yet
    for piece in pieces:
        interval = _INTERVAL_RE.fullmatch(piece)
        if interval:
            first, last = int(interval[1]), int(interval[2] or interval[1])
            if not 1 <= first <= last <= GNO_MAX:
                raise bad(f"interval {piece!r} is not 1 <= first <= last < 2^63")
            found.setdefault(sid, []).append(Interval(first, last))
            waiting = ""
        elif not _TAG_RE.fullmatch(piece):
            raise bad(f"{piece!r} is neither an interval nor a tag")
        elif waiting:
            raise bad(f"tag {waiting!r} without transactions")
        else:
            sid, waiting = Sid(sid.uuid, piece.lower()), piece
    if waiting:
        raise bad(f"tag {waiting!r} without transactions")


# --- MariaDB: GTID positions -----------------------------------------------------------------

_MARIADB_RE = re.compile(r"(\d+)-(\d+)-(\d+)")
U32_MAX, U64_MAX = 2**32 - 1, 2**64 - 1


@dataclass(frozen=True, order=True)
class MariadbGtid:
    """One MariaDB GTID: replication domain, the server that wrote it, sequence number."""

    domain: int
    server_id: int
    seq: int

    def __post_init__(self) -> None:
        if not (0 <= self.domain <= U32_MAX and 0 <= self.server_id <= U32_MAX):
            raise ValueError(f"MariaDB GTID domain or server id out of range: {self}")
        if not 0 <= self.seq <= U64_MAX:
            raise ValueError(f"MariaDB GTID sequence number out of range: {self}")

    def __str__(self) -> str:
        return f"{self.domain}-{self.server_id}-{self.seq}"


@dataclass(frozen=True)
class MariadbGtidPos:
    """A MariaDB GTID position (``gtid_current_pos``, ``gtid_binlog_pos``...): the last GTID
    per replication domain, sorted by domain. Build it with :meth:`parse` or :meth:`of`."""

    gtids: tuple[MariadbGtid, ...] = ()

    def __post_init__(self) -> None:
        domains = [g.domain for g in self.gtids]
        if domains != sorted(set(domains)):
            raise ValueError(f"one GTID per domain, sorted by domain: {self.gtids}")

    @classmethod
    def of(cls, gtids: Iterable[MariadbGtid]) -> MariadbGtidPos:
        """One GTID per domain; of repeated ones the furthest (then the higher server id)."""
        best: dict[int, MariadbGtid] = {}
        for g in gtids:
            held = best.get(g.domain)
            if held is None or (g.seq, g.server_id) > (held.seq, held.server_id):
                best[g.domain] = g
        return cls(tuple(best[d] for d in sorted(best)))

    @classmethod
    def parse(cls, text: str) -> MariadbGtidPos:
        """``0-1-42,1-2-7`` (newlines and spaces around parts allowed; "" is empty)."""
        gtids = []
        for raw in text.replace("\n", ",").split(","):
            item = raw.strip()
            if not item:
                continue
            match = _MARIADB_RE.fullmatch(item)
            if not match:
                raise ValueError(
                    f"not a MariaDB GTID position: {item!r} is not domain-server-seq (in {text!r})"
                )
            try:
                gtids.append(MariadbGtid(int(match[1]), int(match[2]), int(match[3])))
            except ValueError as exc:
                raise ValueError(f"not a MariaDB GTID position: {exc} (in {text!r})") from None
        return cls.of(gtids)

    def as_dict(self) -> dict[int, MariadbGtid]:
        return {g.domain: g for g in self.gtids}

    @property
    def empty(self) -> bool:
        return not self.gtids

    def covers(self, other: MariadbGtidPos) -> bool:
        """Every domain of ``other`` is here with a sequence number at least ``other``'s.
        The server id is not compared: sequence numbers grow per domain."""
        held = self.as_dict()
        return all(g.domain in held and held[g.domain].seq >= g.seq for g in other.gtids)

    def __sub__(self, other: MariadbGtidPos) -> MariadbGtidPos:
        """The GTIDs of this position ``other`` does not account for, per domain: ahead of
        ``other``, at the same sequence number from another server (diverged histories), or
        in a domain ``other`` never saw. ``candidate - source``: its errant transactions."""
        held = other.as_dict()

        def errant(g: MariadbGtid) -> bool:
            o = held.get(g.domain)
            return o is None or g.seq > o.seq or (g.seq == o.seq and g.server_id != o.server_id)

        return MariadbGtidPos(tuple(g for g in self.gtids if errant(g)))

    def __or__(self, other: MariadbGtidPos) -> MariadbGtidPos:
        """Per domain the furthest of the two."""
        return MariadbGtidPos.of((*self.gtids, *other.gtids))

    def parts(self) -> tuple[str, ...]:
        return tuple(str(g) for g in self.gtids)

    def __str__(self) -> str:
        return ",".join(self.parts())


# --- either flavour --------------------------------------------------------------------------

GtidState = MysqlGtidSet | MariadbGtidPos


def parse_gtid(flavor: Flavor, text: str) -> GtidState:
    """The flavour's model of ``text`` (a MySQL GTID set, a MariaDB GTID position)."""
    if flavor is Flavor.MARIADB:
        return MariadbGtidPos.parse(text)
    return MysqlGtidSet.parse(text)


def gtid_covers(flavor: Flavor, have: str, want: str) -> bool:
    """Does ``have`` include everything in ``want``?"""
    if flavor is Flavor.MARIADB:
        return MariadbGtidPos.parse(have).covers(MariadbGtidPos.parse(want))
    return MysqlGtidSet.parse(have).covers(MysqlGtidSet.parse(want))


def gtid_minus(flavor: Flavor, have: str, other: str) -> GtidState:
    """What ``have`` holds that ``other`` lacks (see each model's ``-``)."""
    if flavor is Flavor.MARIADB:
        return MariadbGtidPos.parse(have) - MariadbGtidPos.parse(other)
    return MysqlGtidSet.parse(have) - MysqlGtidSet.parse(other)


__all__ = [
    "GNO_MAX",
    "GtidState",
    "Interval",
    "MariadbGtid",
    "MariadbGtidPos",
    "MysqlGtidSet",
    "Sid",
    "gtid_covers",
    "gtid_minus",
    "parse_gtid",
]
