"""The folder name of a step in a run's folder: always one safe path component (ASCII letters, digits, - and
_), whatever script the step's name is written in. The record keeps the real name."""
from __future__ import annotations

import hashlib
import re
import unicodedata

_PLAIN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")  # the names of old: their folders stay as they were


def step_folder_name(index: int, name: str) -> str:
    """`03-restart` for a plain name; `03-<ascii part>-<8 hex of the name's sha256>` for any other, e.g.
    `02-step-1a2b3c4d` for `サービス停止` (nothing ASCII in it) or `04-check-disk-5e6f7a8b` for `Check disk!`."""
    if _PLAIN.match(name):
        return f"{index + 1:02d}-{name}"
    nfc = unicodedata.normalize("NFC", name)
    ascii_part = unicodedata.normalize("NFKD", nfc).encode("ascii", "ignore").decode("ascii").lower()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_part).strip("-")[:40].strip("-") or "step"
    digest = hashlib.sha256(nfc.encode("utf-8")).hexdigest()[:8]
    return f"{index + 1:02d}-{slug}-{digest}"
