"""2,000 messages through the real actors with the pipeline's writes in the writer process
(``[store] writer = "process"``): the scripts, expectations and carriers of
test_pipeline_e2e, every final state and event history checked."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.test_pipeline_e2e import scripted_run

N = 2_000


async def test_2000_messages_reach_their_final_state_through_the_writer_process(
        tmp_path: Path) -> None:
    async with scripted_run(tmp_path, N, 250, writer="process", deadline=60) as run:
        store, pipe = run.store, run.pipe
        assert pipe.statistics().writer.commits > 0
        assert store.stats.ops_cpu_seconds < pipe.statistics().writer.ops_cpu_seconds
        assert store.entries(b"outbox") == 0
        assert store.entries(b"inflight") == 0
        assert store.entries(b"orphans") == 0
        assert run.wrong_histories() == []
    hexa, dup = run.carriers
    assert hexa.duplicates() == 0 and dup.duplicates() == 0
    assert run.gw.correlator_stats.orphans_matched > 0
    assert run.gw.correlator_stats.unknown == 0 and run.gw.correlator_stats.illegal == 0
