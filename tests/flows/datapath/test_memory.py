"""Memory follows bytes, not rows: wide rows make small chunks, and one huge cell costs a
bounded multiple of itself, measured on a real export in its own process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flows.control.registry import load_checked_registry
from flows.control.settings import Settings
from flows.datapath.keyset import ChunkSizing
from flows.datapath.request import ExportRequest, plan_export
from flows.datapath.source import read_chunks
from tests.flows.helpers import dataset_file, limits

MiB = 2**20
CELL = 50_000_000  # bytes of the huge cell
ROOT = Path(__file__).resolve().parents[3]
SQL = f"""
DROP TABLE IF EXISTS fat, huge, slim;
CREATE TABLE fat (id integer PRIMARY KEY, body text);
INSERT INTO fat SELECT g, repeat(md5(g::text), 128) FROM generate_series(1, 12000) AS g;
CREATE TABLE slim (id integer PRIMARY KEY, body text);
INSERT INTO slim SELECT g, 'row ' || g || ', plain; text' FROM generate_series(1, 3000) AS g;
CREATE TABLE huge (LIKE slim INCLUDING ALL);
INSERT INTO huge SELECT * FROM slim;
INSERT INTO huge VALUES (2000000, left(repeat('lorem ipsum, dolor; sit amet ', {CELL // 29 + 1}),
                                       {CELL}));
"""
YAML = """
modules:
  fat: {table: public.fat, key: id, permission: p, columns: {id: null, body: null}}
  huge: {table: public.huge, key: id, permission: p, columns: {id: null, body: null}}
  slim: {table: public.slim, key: id, permission: p, columns: {id: null, body: null}}
"""


@pytest.fixture(scope="module")
def datasets(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return dataset_file(db_url, tmp_path_factory.mktemp("memory"), SQL, YAML)


def test_wide_rows_make_chunks_of_bytes_not_of_rows(db_url, datasets):
    """~4 KB rows: the default 40,000-row chunk would be 160 MiB; chunks stay near 16 MiB."""
    settings = Settings(_env_file=None, database_url=db_url)
    assert settings.chunk_rows == 40_000
    plan = plan_export(
        ExportRequest(module="fat"), load_checked_registry(datasets, db_url), limits()
    )
    sizing = ChunkSizing.from_settings(settings)
    chunks = [(b.rows, t.nbytes) for b, t in read_chunks(db_url, plan, sizing)]
    rows = [r for r, _ in chunks]
    assert sum(rows) == 12_000 and rows[0] == settings.first_chunk_rows
    per_row = chunks[0][1] / rows[0]
    assert 4096 <= per_row < 4200
    assert all(r <= settings.chunk_bytes / per_row for r in rows[1:]), rows
    assert max(n for _, n in chunks) <= 1.05 * settings.chunk_bytes


def peak_rss(module: str, datasets: Path, db_url: str, out: Path) -> int:
    """Peak RSS in bytes of `exportflow export` run in a process of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTFLOW_")}
    env.update(
        EXPORTFLOW_DATABASE_URL=db_url,
        EXPORTFLOW_DATASETS=str(datasets),
        EXPORTFLOW_DATA_DIR=str(out.parent / "data"),
        PYTHONPATH=str(ROOT),
    )
    # A parent of its own, so that RUSAGE_CHILDREN sees only the export.
    probe = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    cmd = [sys.executable, "-m", "flows.tools.cli", "export", module, "-o", str(out)]
    done = subprocess.run(
        [sys.executable, "-c", probe, *cmd],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return int(done.stdout.split()[-1]) * 1024


@pytest.fixture(scope="module")
def peaks(datasets, db_url, tmp_path_factory) -> dict[str, int]:
    tmp = tmp_path_factory.mktemp("rss")
    found = {m: peak_rss(m, datasets, db_url, tmp / f"{m}.csv") for m in ("slim", "huge")}
    assert (tmp / "huge.csv").stat().st_size > CELL
    return found


def test_a_huge_cell_costs_a_bounded_multiple_of_itself(peaks):
    """Today's bound: the same export without the cell, plus about six copies of it (the
    driver's read buffers, the Arrow table, the Polars frame, the encoded chunk and its
    copy into Python bytes for the sink); measured 284 MiB for a 48 MiB cell."""
    extra = peaks["huge"] - peaks["slim"]
    print(f"peak RSS: slim {peaks['slim'] / MiB:.0f} MiB, huge {peaks['huge'] / MiB:.0f} MiB")
    assert extra <= 7 * CELL, f"{extra / MiB:.0f} MiB for a {CELL / MiB:.0f} MiB cell"


@pytest.mark.xfail(
    strict=True,
    reason="the read alone (libpq and ADBC's COPY buffers, then the Arrow table) holds about "
    "three times the cell; see the report on flows/datapath/source.py",
)
def test_a_huge_cell_fits_in_300_mib_plus_the_cell(peaks):
    assert peaks["huge"] <= 300 * MiB + CELL
