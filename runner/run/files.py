"""Local attachment files, read only from below the files root: the one place a record's path meets the disk.

A dataset record is untrusted, so a path it names is refused when it leads outside the root (`..`,
an absolute path elsewhere, a symlink pointing out), when it is not a regular file, or when it is over
the size limit; `~` and `%2e%2e` are not expanded or decoded, so they name nothing outside either.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Protocol

from ..chat.messages import ContentPart
from ..errors import AttachmentError
from ..plan.attachments import Attachment, to_part

DEFAULT_MAX_ATTACHMENT_MB = 20.0


class AttachmentFiles(Protocol):
    """Reads the bytes of a local attachment; tests may give a fake."""

    max_bytes: int

    def read(self, attachment: Attachment) -> bytes: ...


class FilesRoot:
    """Files below `root` (resolved once, symlinks and all), each at most `max_mb` megabytes."""

    def __init__(self, root: str | Path, max_mb: float = DEFAULT_MAX_ATTACHMENT_MB) -> None:
        self.root = Path(root).resolve()
        self.max_bytes = int(max_mb * 1_000_000)

    def __repr__(self) -> str:
        return f"FilesRoot({str(self.root)!r}, max_bytes={self.max_bytes})"

    def read(self, attachment: Attachment) -> bytes:
        label, shown = attachment.label, repr(attachment.source)
        try:
            real = (self.root / attachment.source).resolve()
        except (OSError, RuntimeError, ValueError) as exc:  # a symlink loop, a name too long
            raise AttachmentError(f"{label}: cannot read {shown}: {_why(exc)}") from None
        if not real.is_relative_to(self.root):  # said before looking: whether it exists out there is not told
            raise AttachmentError(
                f"{label}: {shown} leads outside the files root {self.root}; only files below it can be attached"
            )
        if not real.exists():
            raise AttachmentError(f"{label}: no file {shown} below the files root {self.root}")
        try:
            # O_NOFOLLOW: a symlink swapped in after resolving is refused; O_NONBLOCK: a FIFO cannot hang the run.
            descriptor = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as exc:
            raise AttachmentError(f"{label}: cannot read {shown}: {_why(exc)}") from None
        try:
            info = os.fstat(descriptor)
            if not stat.S_ISREG(info.st_mode):  # a folder, a FIFO, a device
                raise AttachmentError(f"{label}: {shown} is not a regular file")
            if info.st_size > self.max_bytes:
                raise AttachmentError(
                    f"{label}: {shown} is {info.st_size / 1e6:.1f} MB, over the {self.max_bytes / 1e6:g} MB limit "
                    "for one attachment"
                )
            with os.fdopen(descriptor, "rb", closefd=False) as handle:
                data = handle.read(self.max_bytes + 1)
        finally:
            os.close(descriptor)
        if len(data) > self.max_bytes:  # it grew while being read
            raise AttachmentError(f"{label}: {shown} is over the {self.max_bytes / 1e6:g} MB limit for one attachment")
        return data


def attachment_parts(attachments: tuple[Attachment, ...], files: AttachmentFiles | None) -> tuple[ContentPart, ...]:
    """Every attachment of one step as message parts; the first refusal stops them all (nothing is sent)."""
    parts = []
    for attachment in attachments:
        data = None
        if attachment.where == "file":
            if files is None:
                raise AttachmentError(f"{attachment.label}: local files cannot be attached here (no files root)")
            data = files.read(attachment)
        max_bytes = files.max_bytes if files is not None else int(DEFAULT_MAX_ATTACHMENT_MB * 1_000_000)
        parts.append(to_part(attachment, data, max_bytes))
    return tuple(parts)


def _why(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
