"""One intra-op thread for the code inside: microscopic models gain nothing from threads, and on a busy 2-core
machine every op would wait for the other core (15x slower scoring measured); runs compared bitwise need it too."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


@contextmanager
def single_thread() -> Iterator[None]:
    """Run the body on one torch thread, then restore the count it found (a CLI test may set ``--threads``)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
