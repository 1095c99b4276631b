"""One reply message: tokens streamed into packets, with DONE bookkeeping.

SQL Server marks every DONE/DONEPROC/DONEINPROC that is followed by more
tokens with DONE_MORE and leaves it off the last one. Statements are produced
lazily, so the reply holds back the latest DONE until it knows whether more
tokens follow.
"""

from __future__ import annotations

from .packets import REPLY, MessageWriter, PacketIO
from .tokens import DONE_MORE, TOKEN_DONE, done


class Reply:
    def __init__(self, io: PacketIO) -> None:
        self.writer = MessageWriter(io, REPLY)
        self._held: tuple[int, int, int | None, int] | None = None

    def write(self, data: bytes) -> None:
        self._release(more=True)
        self.writer.write(data)

    def done(self, status: int, rowcount: int | None = None, *, token: int = TOKEN_DONE, cur_cmd: int = 0) -> None:
        self._release(more=True)
        self._held = (token, status, rowcount, cur_cmd)

    def _release(self, *, more: bool) -> None:
        if self._held is None:
            return
        token, status, rowcount, cur_cmd = self._held
        self._held = None
        self.writer.write(done(status | (DONE_MORE if more else 0), rowcount, token=token, cur_cmd=cur_cmd))

    def finish(self) -> None:
        if self._held is None:
            self.writer.write(done(0))
        self._release(more=False)
        self.writer.finish()

    def abandon(self) -> None:
        """Send what is buffered without EOM (the connection is about to be dropped)."""
        self._release(more=True)
        if self.writer.pending:
            self.writer._send(bytes(self.writer.pending), last=False)
            self.writer.pending.clear()
