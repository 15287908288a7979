#!/usr/bin/env python3
"""Count the most common words of a text file and upload the result to a blob container.

The task script of the topwords workflow. It needs nothing but Python 3's
standard library, so it runs on a fresh Batch node and on this machine alike.

Word rule: split on whitespace, strip ASCII punctuation from both ends of each
token, drop tokens that become empty; counting is case-sensitive; the file is
read as UTF-8 with a leading byte-order mark removed; equal counts keep the
order in which the words first appear.

The result, ``<stem>_OUTPUT.txt``, is uploaded with Put Blob to the container
whose SAS URL is in the environment variable OUTPUT_CONTAINER_URL.
"""

from __future__ import annotations

import argparse
import collections
import os
import string
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from email.utils import formatdate

DASHES = "-" * 30
STORAGE_API_VERSION = "2021-08-06"


def top_words(text: str, count: int) -> list[tuple[str, int]]:
    """The ``count`` most common words of ``text``, ties in first-occurrence order."""
    words = (token.strip(string.punctuation) for token in text.split())
    return collections.Counter(word for word in words if word).most_common(count)


def report(words: list[tuple[str, int]], environ: dict[str, str]) -> str:
    """The output file's text, in the tutorial's format."""
    lines = ["Word\tCount", DASHES]
    lines += [f"{word}:\t{number}" for word, number in words]
    lines += [
        DASHES,
        f"Node: {environ.get('AZ_BATCH_NODE_ID', '')}",
        f"Task: {environ.get('AZ_BATCH_TASK_ID', '')}",
        f"Job:  {environ.get('AZ_BATCH_JOB_ID', '')}",
        f"Pool: {environ.get('AZ_BATCH_POOL_ID', '')}",
    ]
    return "\n".join(lines) + "\n"


def put_blob(container_url: str, blob_name: str, data: bytes, attempts: int = 5) -> None:
    """Upload ``data`` as a block blob with one Put Blob call, retrying transient failures."""
    parts = urllib.parse.urlsplit(container_url)
    path = parts.path.rstrip("/") + "/" + urllib.parse.quote(blob_name)
    url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))
    for attempt in range(1, attempts + 1):
        request = urllib.request.Request(url, data=data, method="PUT")
        request.add_header("x-ms-blob-type", "BlockBlob")
        request.add_header("x-ms-version", STORAGE_API_VERSION)
        request.add_header("x-ms-date", formatdate(usegmt=True))
        request.add_header("Content-Type", "text/plain; charset=utf-8")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                if response.status in (200, 201):
                    return
        except urllib.error.HTTPError as error:
            if error.code < 500 and error.code != 429:
                raise SystemExit(f"upload of {blob_name} refused: HTTP {error.code} {error.reason}") from None
        except (urllib.error.URLError, OSError):
            pass
        if attempt < attempts:
            time.sleep(min(2**attempt, 30))
    raise SystemExit(f"upload of {blob_name} failed after {attempts} attempts")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--filepath", required=True, help="the text file to read")
    parser.add_argument("--numwords", type=int, required=True, help="how many words to list")
    args = parser.parse_args(argv)

    container_url = os.environ.get("OUTPUT_CONTAINER_URL")
    if not container_url:
        print("OUTPUT_CONTAINER_URL is not set", file=sys.stderr)
        return 2
    with open(args.filepath, encoding="utf-8-sig") as handle:
        text = handle.read()
    output_name = os.path.splitext(os.path.basename(args.filepath))[0] + "_OUTPUT.txt"
    content = report(top_words(text, args.numwords), dict(os.environ))
    with open(output_name, "w", encoding="utf-8") as handle:
        handle.write(content)
    print(f"Uploading file {os.path.abspath(output_name)} to container [output]...")
    put_blob(container_url, output_name, content.encode("utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
