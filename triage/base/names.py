"""Safe file and directory names for identifiers that arrive from the network."""

from __future__ import annotations

import hashlib
import re

_PLAIN_UID = re.compile(r"[0-9]+(\.[0-9]+)*")


def safe_name(uid: str) -> str:
    """The file or directory name for ``uid``.

    A UID of digits and dots (no empty component, at most 64 characters, DICOM padding
    stripped) is used as it is; anything else becomes ``h`` + 40 hex digits of its SHA-256, a
    name that cannot be mistaken for a UID, ``.``/``..`` or the spool's own ``.incoming`` (:mod:`dicom_node.spool`).
    """
    text = str(uid).rstrip("\0 ")
    if len(text) <= 64 and _PLAIN_UID.fullmatch(text):
        return text
    digest = hashlib.sha256(text.encode("utf-8", "backslashreplace")).hexdigest()
    return "h" + digest[:40]
