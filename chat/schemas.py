"""Request and response bodies of the REST API, as pydantic models (also the OpenAPI schema).

Names and passwords have fixed length limits, stated in the published schema. The room
limits an operator may tune (expiry and max_users bounds and defaults) are checked by the
room domain against Settings, so these models only fix their types.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt

from . import sealed


def _printable(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    # Printable ASCII has none of those categories: most names are checked without the loop.
    if value.isascii() and value.isprintable():
        return value
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") and ch != "\u200d" for ch in value):
        raise ValueError("must not contain control or invisible characters")
    return value


DISPLAY_NAME_MAX_CHARS = 50
ROOM_NAME_MAX_CHARS = 100
PASSWORD_MAX_CHARS = 128

Name = Annotated[str, Field(min_length=1, max_length=DISPLAY_NAME_MAX_CHARS), AfterValidator(_printable)]
RoomName = Annotated[str, Field(max_length=ROOM_NAME_MAX_CHARS), AfterValidator(_printable)]
Password = Annotated[str, Field(max_length=PASSWORD_MAX_CHARS)]


def _salt(value: str) -> str:
    if not sealed.valid_salt(value):
        raise ValueError(
            f"must be {sealed.SALT_MIN_BYTES} to {sealed.SALT_MAX_BYTES} random bytes in unpadded base64url"
        )
    return value


Salt = Annotated[str, Field(max_length=128), AfterValidator(_salt)]


class Request(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)


class Preferences(Request):
    destroy_on_owner_offline: StrictBool = True


class CreateRoom(Request):
    owner_name: Name
    name: RoomName | None = None
    password: Password | None = Field(default=None, description="Optional; empty means no password")
    expiry_seconds: StrictInt | None = Field(default=None, description="Seconds the room lives (default 600)")
    max_users: StrictInt | None = Field(default=None, description="Most members online at once (default 20)")
    preferences: Preferences = Field(default_factory=Preferences)
    e2e: StrictBool = Field(
        default=False,
        description="End-to-end encrypted: members send AES-256-GCM envelopes the server cannot read; "
        "the key lives only in the invite link's fragment (docs/protocol.md)",
    )
    e2e_salt: Salt | None = Field(
        default=None,
        description="With e2e and a password: the public salt of a key derived from the password "
        "(the password then sent is itself derived, so the server never learns the key)",
    )


class JoinRoom(Request):
    display_name: Name
    password: Password | None = None
    read_receipts: StrictBool = Field(
        default=True,
        description="False: this member neither sends nor sees read receipts "
        "(the ws_url returned then carries `read_receipts=false`)",
    )


class LeaveRoom(Request):
    display_name: Name | None = None


class CloseRoom(Request):
    owner_token: Annotated[str, Field(max_length=2048)] | None = None
    display_name: Annotated[str, Field(max_length=1024)] | None = None


class RemoveMember(Request):
    owner_token: Annotated[str, Field(max_length=2048)] | None = Field(
        default=None, description="The owner token from room creation (or send it as `Authorization: Bearer`)"
    )


class DetailsQuery(Request):
    password: Password | None = None


class MessagesQuery(DetailsQuery):
    since: Annotated[int, Field(ge=0, le=10**18)] | None = Field(
        default=None, description="The last offset you have; without it, the newest messages"
    )
    epoch: Annotated[str, Field(max_length=64)] | None = Field(
        default=None, description="The epoch your offset belongs to (from the hello)"
    )
    limit: Annotated[int, Field(ge=1, le=1000)] | None = Field(
        default=None, description="Most messages to return (default and most: the history kept, HISTORY_SIZE)"
    )


class RoomCreated(BaseModel):
    room_id: str
    ws_url: str
    expires_at: str
    owner_token: str = Field(description="Proves ownership: needed to close the room")


class RoomJoined(BaseModel):
    ws_url: str
    expires_at: str


class OnlineUser(BaseModel):
    connection_id: str
    display_name: str
    connected_at: str
    read_offset: int | None = Field(
        default=None, description="The newest message offset this member has seen (null: none reported)"
    )
    is_owner: bool = Field(default=False, description="True for the room's owner")


class RoomDetails(BaseModel):
    room_id: str
    name: str | None
    created_at: str
    expires_at: str
    max_users: int
    online_users_count: int
    online_users: list[OnlineUser]
    owner_name: str
    has_password: bool
    is_expired: bool
    is_full: bool
    preferences: Preferences
    e2e: bool = Field(description="Messages are end-to-end encrypted envelopes")
    e2e_salt: str | None = Field(default=None, description="Salt of the password-derived key, if one is used")


class Message(BaseModel):
    message: str


class RoomMessages(BaseModel):
    """Kept messages, oldest first, each as the WebSocket sends it (with its ``offset``)."""

    room_id: str
    epoch: str
    offset: int = Field(description="The newest message's offset (0: none yet)")
    complete: bool = Field(
        description="False when messages after `since` are no longer kept or `epoch` is not the room's"
    )
    messages: list[dict[str, Any]]


class Error(BaseModel):
    detail: str


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    """``ready`` is false (and the status 503) while the backend is unreachable or the server drains."""

    ready: bool
