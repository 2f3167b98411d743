"""What one instance puts back should Redis come back empty (a restart without persistence).

Each instance remembers, for the rooms its members are in, the room's stored fields, each of
its members with the sender and name it was admitted under, and the senders the owner removed
(those before its first member there came, from the admission; those since, as they happen).
After the restart, every instance writes back its share with RESTORE: the room, its own seats,
the names those seats hold and the removals, so a name stays its holder's and a removed member
stays out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from . import MemberRecord


@dataclass(frozen=True, slots=True)
class Seat:
    member: MemberRecord
    sender: str
    name_key: str


@dataclass(slots=True)
class HeldRoom:
    meta: list[str]  # The room's stored fields, flat: field, value, field, value ...
    seats: dict[str, Seat] = field(default_factory=dict)  # connection id -> seat
    removed: set[str] = field(default_factory=set)  # senders


class HeldRooms:
    def __init__(self) -> None:
        self._rooms: dict[str, HeldRoom] = {}

    def seat(self, room_id: str, meta: list[str], seat: Seat, removed: Iterable[str] = ()) -> None:
        room = self._rooms.get(room_id)
        if room is None:
            room = self._rooms[room_id] = HeldRoom(meta)
        room.meta = meta
        room.seats[seat.member.connection_id] = seat
        room.removed.update(removed)

    def let_go(self, room_id: str, connection_id: str) -> None:
        """This member is no longer put back; nor is its room once it held nobody else."""
        room = self._rooms.get(room_id)
        if room is not None and room.seats.pop(connection_id, None) is not None and not room.seats:
            del self._rooms[room_id]

    def forget(self, room_id: str) -> None:
        """The room ended: never put it back, whatever its members still do here."""
        self._rooms.pop(room_id, None)

    def removed(self, room_id: str, sender: str) -> None:
        room = self._rooms.get(room_id)
        if room is not None and sender:
            room.removed.add(sender)

    def meta(self, room_id: str) -> list[str] | None:
        room = self._rooms.get(room_id)
        return room.meta if room is not None else None

    def restore_args(
        self, instance_id: str, conn_prefix: Callable[[str], str]
    ) -> Iterator[tuple[str, list[str | int], list[str]]]:
        """(room id, RESTORE's ARGV, the connection ids it seats) for each room held.

        Works on copies: members may leave while the caller awaits Redis between rooms.
        """
        for room_id, room in list(self._rooms.items()):
            seats = list(room.seats.values())
            args: list[str | int] = [conn_prefix(room_id), instance_id, room_id, len(room.meta) // 2, *room.meta]
            args += [len(room.removed), *room.removed]
            for seat in seats:
                m = seat.member
                args += [m.connection_id, m.display_name, repr(m.connected_at), "1" if m.is_owner else "0"]
                args += [seat.sender, seat.name_key]
            yield room_id, args, [seat.member.connection_id for seat in seats]
