"""Peer benchmarks: procrastinate, pgqueuer and DBOS measured on the same
machine as rota. Run them with ``python -m bench.peers.run_peer`` from the
repository root, using the separate virtualenv ``.venv-bench`` (see
``bench/requirements-peers.txt``)."""

PEERS = ("procrastinate", "pgqueuer", "dbos")
