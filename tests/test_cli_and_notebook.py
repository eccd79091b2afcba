"""The CLI and the report notebook, run for real (typer runner, papermill, kaleido + Chromium)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bridge.cli import app

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def cli_run(sample_dir, tmp_path_factory):
    db = tmp_path_factory.mktemp("cli") / "state.duckdb"
    runner = CliRunner()
    res = runner.invoke(app, ["data", "install-samples", "--data-dir", str(sample_dir), "--db", str(db)])
    assert res.exit_code == 0, res.output
    res2 = runner.invoke(app, ["preview", "run", "--data-dir", str(sample_dir), "--db", str(db),
                               "--as-of", "2010-08-20T18:00:00"])
    assert res2.exit_code == 0, res2.output
    return db, res.output, res2.output


def test_install_summary_does_not_hide_rejects(cli_run):
    _, out, _ = cli_run
    assert "high_low_inconsistent" in out and "78" in out
    assert "session_missing" in out and "2009-09-08" in out


def test_preview_run_prints_instances(cli_run):
    _, _, out = cli_run
    for sid in ("momentum_top50", "reversal_top50", "ew_buy_hold"):
        assert sid in out


def test_report_notebook_runs_with_papermill(cli_run, sample_dir, tmp_path):
    from bridge.reports.notebooks import execute_notebook

    db, _, _ = cli_run
    png = tmp_path / "nav.png"
    nb, html = execute_notebook("preview", tmp_path, {"db_path": str(db), "data_dir": str(sample_dir),
                                                      "png_path": str(png)})
    cells = json.loads(nb.read_text())["cells"]
    assert not [o for c in cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    text = html.read_text()
    assert "plotly" in text.lower() and "20-day momentum, top 50" in text and "S&amp;P 500" in text
    assert "NAV identity holds on 735 instance-sessions" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_import_bridge_stays_light():
    code = ("import sys, bridge, bridge.cli; heavy = [m for m in ('pandas', 'polars', 'duckdb', "
            "'plotly', 'exchange_calendars') if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_cli_reconcile_finds_and_syncs_real_divergences(sample_dir, tmp_path):
    res = CliRunner().invoke(app, ["reconcile", "--data-dir", str(sample_dir), "--out",
                                   str(tmp_path), "--sync"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "synced 18 differences broker -> local" in text
    reports = [p for p in tmp_path.iterdir() if (p / "report.json").exists()]
    assert len(reports) == 2
    docs = [json.loads((p / "report.json").read_text()) for p in reports]
    assert sorted(d["is_synced"] for d in docs) == [False, True]


def test_report_with_paths_relative_to_the_callers_cwd(sample_dir, tmp_path, monkeypatch):
    """`make demo` passes data/bridge.duckdb; the notebook runs in notebooks/: paths must hold."""
    from datetime import datetime

    from bridge.preview.pipeline import run_pipeline

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BRIDGE_HOME", str(ROOT))
    run_pipeline(sample_dir, tmp_path / "rel.duckdb", created_at=datetime(2010, 8, 20))
    res = CliRunner().invoke(app, ["report", "preview", "--db", "rel.duckdb", "--out", "out"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "out" / "preview.html").exists()


def test_paper_notebook_through_alpaca_and_no_secret_written(tmp_path, monkeypatch):
    """The paper hand-off with broker="alpaca": the real alpaca-py client against the offline
    emulator; the credentials from the environment appear in nothing written."""
    from bridge.reports.notebooks import execute_notebook

    secret = "sk-scan-Hq2x7Lw9Vt4Rk8Pz3Mn6"
    monkeypatch.setenv("APCA_API_KEY_ID", "PKSCANKEY00000001")
    monkeypatch.setenv("APCA_API_SECRET_KEY", secret)
    monkeypatch.setenv("BRIDGE_HOME", str(ROOT))
    nb, html = execute_notebook("paper", tmp_path, {"broker": "alpaca",
                                                     "events_dir": str(tmp_path / "events")})
    text = nb.read_text()
    assert "orders: FILLED=" in text and "agree with the alpaca broker" in text
    assert "is_synced True" in text                  # reconciliation against Alpaca, too
    written = [nb, html, *(tmp_path / "events").rglob("*"),
               *(ROOT / "reports" / "paper_alpaca").rglob("*")]
    for f in (p for p in written if p.is_file()):
        assert secret.encode() not in f.read_bytes(), f


def test_paper_notebook_through_ib(tmp_path, monkeypatch):
    """The paper hand-off with broker="ib": the real ib_async client against the TWS API
    emulator on 127.0.0.1; bridge's book, IB's positions and a reconciliation all agree."""
    pytest.importorskip("ib_async")
    from bridge.reports.notebooks import execute_notebook

    monkeypatch.setenv("BRIDGE_HOME", str(ROOT))
    nb, _ = execute_notebook("paper", tmp_path, {"broker": "ib",
                                                 "events_dir": str(tmp_path / "events")})
    text = nb.read_text()
    assert "orders: FILLED=" in text and "agree with the ib broker" in text
    assert "against ib-paper: is_synced True" in text


def test_emulate_ib_cli_serves_ib_async(tmp_path, sample_dir):
    """`bridge emulate ib` on a port, driven by its stdin commands, with ib_async connecting."""
    pytest.importorskip("ib_async")
    import socket

    from bridge.brokers.ib import IBExecutor
    from bridge.execution.contract import OrderCtx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "bridge.cli", "emulate", "ib", "--port",
                             str(port), "--data-dir", str(sample_dir), "--cash", "50000",
                             "--start", "2010-08-02", "--end", "2010-08-31"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert "TWS emulator on 127.0.0.1:" in proc.stdout.readline()
        ex = IBExecutor(port=port, client_id=5, connect_timeout_s=3.0)
        ctx = OrderCtx(client_order_id="cli-1", instrument="XOM", side="buy", tick_size=0.01,
                       step_size=1.0, order_type="market", quantity=10, time_in_force="day",
                       decision_snapshot_id="s", strategy_id="s", ts_ms=0, event_ts_ms=0)
        assert ex.submit(ctx).status == "ACCEPTED"
        proc.stdin.write("advance 2010-08-03\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "1 fills"
        assert [(f.instrument, f.quantity) for f in ex.flush()] == [("XOM", 10.0)]
        ex.close()
        proc.stdin.write("quit\n")
        proc.stdin.flush()
        assert proc.wait(10) == 0
    finally:
        proc.kill()


def test_cli_reconcile_through_ib(sample_dir, tmp_path):
    pytest.importorskip("ib_async")
    res = CliRunner().invoke(app, ["reconcile", "--broker", "ib", "--data-dir", str(sample_dir),
                                   "--out", str(tmp_path), "--sync"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "ib-paper" in text and "synced 18 differences broker -> local" in text


def test_reconciliation_notebook_through_ib(tmp_path, monkeypatch):
    pytest.importorskip("ib_async")
    from bridge.reports.notebooks import execute_notebook

    monkeypatch.setenv("BRIDGE_HOME", str(ROOT))
    nb, _ = execute_notebook("reconciliation", tmp_path, {"broker": "ib",
                                                          "out_dir": str(tmp_path / "rec")})
    text = nb.read_text()
    assert "broker `ib-paper`" in text and "is_synced **True**" in text
