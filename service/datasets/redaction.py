"""What a client may read of a decoding error: its own names, never the server's folders.

Loaders name the files they fail on by their server paths (an upload's stored name, the
temporary folder an archive is extracted into, the data directory), and OS errors quote them.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping

from service.settings import Settings

# Object reprs in library messages (e.g. PIL's "<_io.BytesIO object at 0x7f...>").
_OBJECT_REPR = re.compile(r" ?<[\w.]+ object at 0x[0-9a-fA-F]+>")


def _boundary(folder: str) -> re.Pattern[str]:
    """``folder`` as a whole path prefix: not part of a longer name on either side."""
    return re.compile(rf"(?<![\w.-]){re.escape(folder)}(?![\w.-])")


def _server_folders(settings: Settings) -> list[tuple[str, str]]:
    """The data directory and the temporary directory (as configured and resolved), longest
    first, each with the placeholder shown instead."""
    folders: dict[str, str] = {}
    for folder, label in ((tempfile.gettempdir(), "<tmp>"), (str(settings.data_dir), "<data>")):
        for spelling in (os.path.abspath(folder), os.path.realpath(folder)):
            if spelling != os.sep:
                folders[spelling] = label
    return sorted(folders.items(), key=lambda item: -len(item[0]))


def public_message(
    text: str, names: Mapping[str, str], settings: Settings, archive: str = "the archive"
) -> str:
    """``text`` with server paths replaced by the names the user knows them by.

    Args:
        text: The error message.
        names: Server paths (an upload's stored file, a resolved server path) mapped to the
            user's names for them (the upload's name, the path as the user wrote it).
        settings: For the data directory, shown as ``<data>``; the temporary directory is
            shown as ``<tmp>``.
        archive: What an archive's extraction folder reads as, so that its members read
            ``pets.zip/cat/1.png``.

    Returns:
        The message.
    """
    from search.datasets.archive import STAGING_PREFIX

    # The user's names go in as numbered NUL-delimited placeholders first, so that the folder
    # rules below cannot rewrite them (a path the user wrote may lie under the temp folder).
    text = text.replace("\x00", "\\x00")
    kept: list[str] = []

    def keep(name: str) -> str:
        kept.append(name)
        return f"\x00{len(kept) - 1}\x00"

    for server, name in sorted(names.items(), key=lambda item: -len(item[0])):
        text = _boundary(server).sub(keep(name), text)
    staging = rf"[^\s'\"]*/{re.escape(STAGING_PREFIX)}[^/\s'\"]+(?:/tree|/upload)?"
    text = re.sub(staging, keep(archive), text)
    for folder, label in _server_folders(settings):
        text = _boundary(folder).sub(label, text)
    text = _OBJECT_REPR.sub("", text)
    return re.sub("\x00(\\d+)\x00", lambda m: kept[int(m.group(1))], text)
