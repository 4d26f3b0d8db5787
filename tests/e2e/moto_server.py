"""The emulator the end-to-end tests start: moto's server, with one race of its own fixed.

moto's Kinesis shard numbers a new record as one more than the highest number it holds,
then stores it under that number, with no lock between the two; its server answers
requests on threads. Two hosts putting records to one shard at the same moment (the
tests that run two hosts at once) can take the same number, and one record silently
replaces the other: an output lost by the emulator, not by the host. A real stream
numbers every record. Here every shard's writes and reads hold one lock (a read that
iterates a shard's records while a write adds one would fail the same way).
"""

import sys
import threading

from moto.kinesis import models
from moto.server import main

_lock = threading.Lock()


def _locked(method):
    def locked(self, *args, **kwargs):
        with _lock:
            return method(self, *args, **kwargs)

    return locked


models.Shard.put_record = _locked(models.Shard.put_record)
models.Shard.get_records = _locked(models.Shard.get_records)

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
