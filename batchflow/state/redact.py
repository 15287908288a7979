"""Find Azure secrets in text, so that none is ever written under ``.batchflow/``.

The state file, the task journal and the lock information are plain files
that users copy into bug reports and CI artifacts. A storage SAS token or an
account key in them would hand over the storage account, so every writer in
:mod:`batchflow.state` passes its text through :func:`assert_no_secrets`
first and refuses to write rather than leak.

Three shapes are recognised::

    https://acct.blob.core.windows.net/c/b?sv=2023-11-03&sp=r&sig=Zm9v...%3D   SAS signature
    Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==
                                                                                 account key
    DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=...;              connection string

A finding names the kind of secret and its offset, never the secret itself,
because findings end up in error messages and logs.
"""

from __future__ import annotations

import re

#: What :func:`redact_secrets` puts in place of a secret value.
REDACTED = "REDACTED"

# A SAS signature is a base64 HMAC-SHA256 (44 characters), usually
# percent-encoded in a URL. Requiring a run of at least 16 signature
# characters keeps prose such as "sig=" or the SDK's own "sig=REDACTED"
# from counting; the look-behind makes "xsig=" (another parameter) not match.
_SAS_SIGNATURE = re.compile(r"(?<![A-Za-z0-9_])(sig=)(?!REDACTED)([A-Za-z0-9%+/=]{16,})", re.IGNORECASE)

# An account key is 64 random bytes in base64: 86 characters and "==". The
# look-arounds stop a match inside a longer base64 run (a blob's content, say).
_ACCOUNT_KEY = re.compile(r"(?<![A-Za-z0-9+/])()([A-Za-z0-9+/]{86}==)(?![A-Za-z0-9+/=])")

# In a connection string the key follows "AccountKey=" up to the next ";".
_CONNECTION_KEY = re.compile(r"(AccountKey=)(?!REDACTED)([^;\s\"']+)", re.IGNORECASE)

_PATTERNS = (
    ("SAS signature (sig=...)", _SAS_SIGNATURE),
    ("account key in a connection string (AccountKey=...)", _CONNECTION_KEY),
    ("storage account key (88 base64 characters)", _ACCOUNT_KEY),
)

# Every pattern contains a fixed marker. A state file of 100,000 tasks is
# about 16 MB and is scanned on every snapshot, so the regular expressions
# run only where their marker occurs: over the whole text they would take a
# second, where finding the markers takes milliseconds.
_SAS_MARKER = "sig="
_CONNECTION_MARKER = "accountkey="
_KEY_MARKER = "=="


def find_secrets(text: str) -> list[str]:
    """Describe every secret in *text*, in order of position.

    Each entry reads like ``"SAS signature (sig=...) at offset 120"``: enough
    to locate the problem, without repeating the value.
    """
    found: list[tuple[int, str]] = []
    lowered = text.lower()
    for kind, pattern, marker in (
        (_PATTERNS[0][0], _SAS_SIGNATURE, _SAS_MARKER),
        (_PATTERNS[1][0], _CONNECTION_KEY, _CONNECTION_MARKER),
    ):
        if marker not in lowered:
            continue
        if text.isascii():
            # Lower-casing ASCII keeps every offset, so the markers found in
            # the lowered text are where the pattern can start in the original.
            matches = (pattern.match(text, position) for position in _occurrences(lowered, marker))
        else:
            matches = pattern.finditer(text)
        for match in matches:
            if match:
                found.append((match.start(2), f"{kind} at offset {match.start(2)}"))
    for position in _occurrences(text, _KEY_MARKER):
        # The key's 86 characters end where the "==" starts.
        match = _ACCOUNT_KEY.match(text, max(0, position - 86))
        if match and match.end() == position + 2:
            found.append((match.start(2), f"{_PATTERNS[2][0]} at offset {match.start(2)}"))
    # An account key inside "AccountKey=" is found twice; report the place once.
    seen: set[int] = set()
    result = []
    for offset, description in sorted(found):
        if offset not in seen:
            seen.add(offset)
            result.append(description)
    return result


def _occurrences(text: str, marker: str) -> list[int]:
    """Every index at which *marker* starts in *text*."""
    positions = []
    position = text.find(marker)
    while position >= 0:
        positions.append(position)
        position = text.find(marker, position + 1)
    return positions


def assert_no_secrets(text: str, *, where: str = "text") -> None:
    """Raise ``ValueError`` if *text* holds a secret; *where* names the destination.

    The message lists what was found and where, so the caller can trace the
    value that carried it, and it never contains the secret.
    """
    findings = find_secrets(text)
    if findings:
        raise ValueError(
            f"refusing to write {where}: it would contain {len(findings)} secret(s): "
            + "; ".join(findings)
            + ". Secrets must never be stored; redact them before recording."
        )


def redact_secrets(text: str) -> str:
    """Return *text* with every secret value replaced by ``REDACTED``.

    For callers that record text they do not control, such as a task's
    failure message from the service, which can quote a resource file's SAS
    URL. The key names stay (``sig=REDACTED``) so the text still makes sense.
    """
    for _kind, pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    return text
