"""The bounded chaos run (CI): >= 5,000 jobs through worker processes under every fault.

The same code runs long with the issue's numbers: ``python hack/chaos.py`` (see its --help).
Short leases (2s) and reaper interval (1s) keep this run around 40 s.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from chaos_harness import Chaos, ChaosParams
from chaos_verdict import judge


@pytest.mark.chaos
@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_no_job_is_lost_under_kills_cuts_and_redis_restarts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines: list[str] = []
    run = await Chaos(ChaosParams.ci(), tmp_path / "chaos", log=lines.append).run()
    verdict = judge(run)
    with capsys.disabled():
        print("\n" + "\n".join(lines) + "\n" + verdict.table())
    if not verdict.ok:
        # pytest prunes old tmp dirs; keep the evidence (worker logs, run.json) somewhere stable.
        kept = shutil.copytree(tmp_path / "chaos", Path(tempfile.mkdtemp(prefix="jobqueue-chaos-failed-")) / "chaos")
        pytest.fail("chaos verdict failed:\n" + verdict.table() + f"\nworker logs and run.json: {kept}")
