"""Shared Key signature check, computed exactly as the azure-batch SDKs sign.

The string to sign is rebuilt from the request as received (raw,
still-encoded path; decoded query values) and compared in constant time.
Any mismatch is a 403 ``AuthenticationFailed``, as on the real service.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import parse_qs

from batchflow.local.emulator import errors

_SIGNED_HEADERS = (
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "range",
)


def string_to_sign(method: str, raw_path: str, raw_query: str, headers: Mapping[str, str], account: str) -> str:
    """Build the canonical string the client signed (see reference §1.9)."""
    lowered = {name.lower(): value for name, value in headers.items() if value}
    if method not in ("GET", "HEAD"):
        lowered.setdefault("content-length", "0")
    text = method + "\n" + "\n".join(str(lowered.get(name, "")) for name in _SIGNED_HEADERS) + "\n"
    ocp = sorted((name, value) for name, value in lowered.items() if "ocp-" in name)
    text += "".join(f"{name}:{value}\n" for name, value in ocp)
    text += f"/{account}{raw_path}"
    query = parse_qs(raw_query)
    for name in sorted(query):
        value = query[name][0]
        if value:
            text += f"\n{name}:{value}"
    return text


def sign(text: str, key: str) -> str:
    """Base64 HMAC-SHA256 of ``text`` under the base64 ``key``."""
    digest = hmac.new(base64.b64decode(key), text.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def check(method: str, raw_path: str, raw_query: str, headers: Mapping[str, str], account: str, key: str) -> None:
    """Raise 403 unless the ``Authorization`` header is a valid Shared Key signature."""
    authorization = next((v for n, v in headers.items() if n.lower() == "authorization"), "")
    if not authorization:
        raise errors.authentication_failed("The Authorization header is missing.")
    scheme, _, credential = authorization.partition(" ")
    name, _, signature = credential.partition(":")
    if scheme != "SharedKey" or not signature:
        raise errors.authentication_failed("Only Shared Key authentication is supported locally.")
    if name != account:
        raise errors.authentication_failed(f"Unknown account {name!r}; the local account is {account!r}.")
    expected = sign(string_to_sign(method, raw_path, raw_query, headers, account), key)
    if not hmac.compare_digest(expected, signature):
        raise errors.authentication_failed(
            "The MAC signature found in the HTTP request is not the same as any computed signature."
        )
