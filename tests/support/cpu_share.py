"""One CPU thread for every llama-server the suite starts, unless the environment says otherwise.

llama-server's default is a thread per core, and its threads meet at a barrier for every
step of a token: when anything else wants a core - the router, the test client, a second
llama-server (the suite runs two models, and replicas), another job on the box - one of
them waits for the scheduler at each barrier and generation collapses. Measured on this
2-core box: two replicas answering at once, 222 s for the elastic-replica tests with the
default against 44 s with one thread each; beside a busy loop, 1.5-2.2 tokens/s against
24; in the topology tests' five llama-servers, a 2-token request took 1.4-12 s against 0.35 s. The suite tests the router, not llama-server's threading, so each child gets one
thread through llama-server's own ``LLAMA_ARG_THREADS`` (the batch threads follow it),
set before the first one starts and inherited by every child. A config's ``extra_args``
still win, and ``LLAMA_ARG_THREADS=2 make test`` still chooses otherwise. The README's
troubleshooting gives the same advice to operators on a shared box.
"""

from __future__ import annotations

import os

THREADS_ENV = "LLAMA_ARG_THREADS"


def share_the_cpu() -> None:
    """Give every llama-server started from now on one thread, unless ``LLAMA_ARG_THREADS`` is set."""
    os.environ.setdefault(THREADS_ENV, "1")
