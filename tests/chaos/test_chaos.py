"""The chaos suite (see harness.py): a mixed workload under random faults, then invariants.

- `test_short_chaos_on_postgresql_keeps_every_invariant`: every fault kind, about a minute, in
  `make test` (on PostgreSQL under CI=true / ROTA_REQUIRE_POSTGRES).
- `test_short_chaos_catches_a_broken_lease_fence`: the same run with the lease fence on step
  checkpoints switched off in the workers (chaos_app.break_lease_fence, a test hook): the
  invariant check must fail.
- `test_short_chaos_on_sqlite_keeps_every_invariant`: process kills on SQLite (`make chaos`).
- `test_long_chaos` (`make chaos`): minutes of it, with the figures docs/reliability.md shows;
  skipped unless CHAOS_LONG=1.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from private_pg import PrivateCluster, private_cluster

from harness import PG_FAULTS, SQLITE_FAULTS, Chaos, ChaosConfig, ChaosResult, seed_from_env

pytestmark = pytest.mark.slow  # `make test` runs them; `make test-fast` leaves them out

SHORT_FAULT_S = float(os.environ.get("CHAOS_SHORT_S", "12"))
LONG_FAULT_S = float(os.environ.get("CHAOS_SECONDS", "300"))


@pytest.fixture
def cluster() -> Iterator[PrivateCluster]:
    with private_cluster() as started:
        yield started


def _side_url(cluster: PrivateCluster) -> str:
    """A database of the cluster's for the workload's own records (not rota's)."""
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE chaos_side")
    return cluster.url.rsplit("/", 1)[0] + "/chaos_side"


def _run_pg(cluster: PrivateCluster, tmp_path: Path, config: ChaosConfig) -> ChaosResult:
    with Chaos(config, cluster.url, _side_url(cluster), tmp_path, cluster) as chaos:
        return chaos.run()


@pytest.mark.postgres
def test_short_chaos_on_postgresql_keeps_every_invariant(
    cluster: PrivateCluster, tmp_path: Path
) -> None:
    config = ChaosConfig(seed=seed_from_env(), fault_s=SHORT_FAULT_S, faults=PG_FAULTS)
    result = _run_pg(cluster, tmp_path, config)
    assert result.findings.ok, result.table()
    assert result.findings.counts["runs succeeded"] > 0
    assert {f.kind for f in result.faults} == set(PG_FAULTS), result.table()


@pytest.mark.postgres
def test_short_chaos_catches_a_broken_lease_fence(cluster: PrivateCluster, tmp_path: Path) -> None:
    # Zombies are what the fence stops: stalls longer than the lease, with steps long
    # enough that the worker which took the run over is still inside the same step.
    config = ChaosConfig(
        seed=seed_from_env(),
        # Long enough for several stalls past the lease, so the zombie write is certain.
        fault_s=max(SHORT_FAULT_S, 20.0),
        faults=("net_stall",),
        gap_s=(0.2, 0.5),
        step_s="0.3,1.2",
        break_fence=True,
    )
    result = _run_pg(cluster, tmp_path, config)
    assert not result.findings.ok, "a broken lease fence went unnoticed:\n" + result.table()
    broken = set(result.findings.violations)
    assert broken & {"checkpoints written under a lost lease", "completed steps re-run"}, (
        result.table()
    )


@pytest.mark.skipif(not os.environ.get("CHAOS_LONG"), reason="make chaos (CHAOS_LONG=1) only")
def test_short_chaos_on_sqlite_keeps_every_invariant(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'rota.db'}"
    # Two fault kinds only: a shorter run meets them both several times.
    config = ChaosConfig(seed=seed_from_env(), fault_s=SHORT_FAULT_S / 2, faults=SQLITE_FAULTS)
    with Chaos(config, url, str(tmp_path / "side.db"), tmp_path) as chaos:
        result = chaos.run()
    assert result.findings.ok, result.table()
    assert result.findings.counts["runs succeeded"] > 0


@pytest.mark.postgres
@pytest.mark.skipif(not os.environ.get("CHAOS_LONG"), reason="make chaos (CHAOS_LONG=1) only")
@pytest.mark.timeout(LONG_FAULT_S + 900)  # the faults, then start-up, settle and checks
def test_long_chaos(cluster: PrivateCluster, tmp_path: Path) -> None:
    config = ChaosConfig(seed=seed_from_env(), fault_s=LONG_FAULT_S, settle_s=180)
    result = _run_pg(cluster, tmp_path, config)
    assert result.findings.ok, result.table()
