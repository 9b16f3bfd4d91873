"""The GUI thread stays live and the GUI process stays up: Qt bindings that keep None's refcount,
chart redraws coalesced, no heavy imports on the pool while mining."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from PySide6.QtCore import QPointF
from PySide6.QtGui import QImage, QPainter
from PySide6.QtWidgets import QLabel

from desktop import chainread
from desktop.charts import REDRAW_MS, _import_pyqtgraph
from desktop.screens.common import fill_table, make_table
from desktop.screens.mine import MineScreen
from miner import events as ev

REPO = Path(__file__).resolve().parents[2]


def test_qt_calls_returning_nothing_keep_the_refcount_of_none(qtbot: Any) -> None:
    """PySide6 6.12.0 on Python 3.11 dropped a reference to None on every call that returns nothing
    (QLabel.setText, QPainter.drawLine...): after enough calls None was deallocated and the app
    aborted (``Fatal Python error: none_dealloc``, at exit or mid-run while a chart repainted)."""
    label = QLabel()
    qtbot.addWidget(label)
    image = QImage(8, 8, QImage.Format.Format_ARGB32)
    painter = QPainter(image)
    try:
        before = sys.getrefcount(None)
        for _ in range(200):
            label.setText("x")
            painter.drawLine(QPointF(0, 0), QPointF(1, 1))
        lost = before - sys.getrefcount(None)
    finally:
        painter.end()
    assert lost < 50, f"{lost} references to None lost in 400 Qt calls: a PySide6 refcount bug (pin it)"


def progress(step: int, loss: float = 2.0) -> ev.Progress:
    return ev.Progress(
        task_id="0x" + "ab" * 32,
        phase="train",
        percent=step / 10,
        eta_s=60.0,
        loss=loss,
        step=step,
        total_steps=1000,
    )


def test_a_burst_of_step_events_redraws_the_loss_chart_a_few_times_only(qtbot: Any) -> None:
    """One chart repaint per trainer step (with a translucent grid: ~18 ms of the GUI thread each,
    3-5x that while training shares the cores) was the GUI stall over 100 ms while mining."""
    mine = MineScreen()
    qtbot.addWidget(mine)
    mine.resize(900, 700)
    mine.show()
    mine.loss_chart.attach(_import_pyqtgraph())
    for step in range(1, 301):
        mine.on_event_miner_progress(progress(step, 3.0 - step / 1000))
    chart = mine.loss_chart
    qtbot.waitUntil(lambda: len(chart.curve.getData()[0]) == 300, timeout=5 * REDRAW_MS)
    assert chart.redraw.runs <= 3, f"{chart.redraw.runs} redraws for 300 step events"
    assert mine.loss_points() == 300  # every point kept, only the drawing is coalesced
    qtbot.waitUntil(lambda: mine.progress.value() == 300, timeout=2_000)  # the latest percent, 30.0
    for axis in ("left", "bottom"):
        assert not chart.plot.getPlotItem().getAxis(axis).grid, "the grid is most of each repaint"
    runs = chart.redraw.runs
    chart.set_data(list(chart.xs), list(chart.ys))  # the same series again (the Wallet's, each second)
    qtbot.wait(REDRAW_MS + 100)
    assert chart.redraw.runs == runs


def test_an_unchanged_table_is_not_rebuilt_and_columns_refit_only_when_rows_change(
    qtbot: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = make_table(["a", "b"])
    qtbot.addWidget(table)
    fits: list[int] = []
    monkeypatch.setattr(table, "resizeColumnsToContents", lambda: fits.append(table.rowCount()))
    rows = [[f"task {i}", f"{i} s"] for i in range(300)]
    fill_table(table, rows)
    first = table.item(0, 0)
    fill_table(table, [list(r) for r in rows])  # every snapshot, once a second
    assert table.item(0, 0) is first and fits == [300]
    rows[5][1] = "changed"
    fill_table(table, rows)
    assert table.item(5, 1).text() == "changed" and table.item(0, 0) is first and fits == [300]
    fill_table(table, rows[:10])
    assert table.rowCount() == 10 and fits == [300, 10]


class FakeNode(BaseHTTPRequestHandler):
    """Answers eth_call like a node holding a registry whose token gives 0x42...42 a balance."""

    REGISTRY, TOKEN, HOLDER = "0x" + "11" * 20, "0x" + "22" * 20, "0x" + "42" * 20
    calls: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeNode.calls.append(request)
        call = request["params"][0]
        if call == {"to": self.REGISTRY, "data": "0xfc0c546a"}:
            result = "0x" + self.TOKEN[2:].rjust(64, "0")
        elif call == {"to": self.TOKEN, "data": "0x70a08231" + self.HOLDER[2:].rjust(64, "0")}:
            result = hex(7 * 10**18)
        else:
            result = None
        reply = {"jsonrpc": "2.0", "id": request["id"]}
        reply.update({"result": result} if result else {"error": {"code": -32000, "message": "revert"}})
        body = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_node() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), FakeNode)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_the_balance_is_one_plain_eth_call_per_contract(fake_node: str) -> None:
    FakeNode.calls.clear()
    holder = FakeNode.HOLDER.upper().replace("0X", "0x")  # any case
    assert chainread.token_balance(fake_node, FakeNode.REGISTRY, holder) == 7 * 10**18
    assert [c["method"] for c in FakeNode.calls] == ["eth_call", "eth_call"]
    with pytest.raises(chainread.RpcUnavailable, match="revert"):
        chainread.token_balance(fake_node, FakeNode.REGISTRY, "0x" + "43" * 20)


def test_the_selectors_are_those_of_the_compiled_contracts() -> None:
    from Crypto.Hash import keccak

    def selector(signature: str) -> str:
        return keccak.new(digest_bits=256, data=signature.encode()).hexdigest()[:8]

    abis = {
        name: json.loads((REPO / "wallet" / "contracts" / f"{name}.json").read_text())["abi"]
        for name in ("MagnetRegistry", "MagnetToken")
    }
    assert any(f.get("name") == "token" and not f["inputs"] for f in abis["MagnetRegistry"])
    assert any(
        f.get("name") == "balanceOf" and [i["type"] for i in f["inputs"]] == ["address"]
        for f in abis["MagnetToken"]
    )
    assert selector("token()") == chainread.SELECTOR_TOKEN
    assert selector("balanceOf(address)") == chainread.SELECTOR_BALANCE_OF


def test_reading_the_balance_imports_no_web3() -> None:
    """web3's import is ~1.7 s of pure Python: on the GUI process's pool it took the GIL from the GUI
    thread 15 s into mining, when the first balance read came."""
    code = (
        "import sys\n"
        "from desktop.window import MainWindow\n"
        "from desktop.chainread import RpcUnavailable, token_balance\n"
        "try:\n"
        "    token_balance('http://127.0.0.1:9', '0x' + '11' * 20, '0x' + '42' * 20)\n"
        "except RpcUnavailable as exc:\n"
        "    print('unavailable', 'web3' in sys.modules, 'wallet.chain' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.split() == ["unavailable", "False", "False"], out.stdout + out.stderr


def test_the_logs_screen_appends_new_lines_instead_of_reloading_the_tail(
    qtbot: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from desktop.screens.logs import LogsScreen

    log = tmp_path / "magnet.log"
    log.write_text("".join(f"line {i}\n" for i in range(1000)))
    screen = LogsScreen(log)
    qtbot.addWidget(screen)
    reloads: list[int] = []
    set_plain = screen.text.setPlainText
    monkeypatch.setattr(screen.text, "setPlainText", lambda text: (reloads.append(1), set_plain(text)))
    screen.refresh()
    with log.open("a") as f:
        f.write("line 1000\nline 10")  # the last line is still being written
    screen.refresh()
    lines = screen.text.toPlainText().splitlines()
    assert lines[0] == "line 0" and lines[-1] == "line 1000" and len(reloads) == 1
    with log.open("a") as f:
        f.write("01\n")
    screen.refresh()
    screen.refresh()  # nothing new: nothing done
    assert screen.text.toPlainText().splitlines()[-2:] == ["line 1000", "line 1001"] and len(reloads) == 1
    log.write_text("rotated\n")  # a new, shorter file: read again
    screen.refresh()
    assert screen.text.toPlainText() == "rotated" and len(reloads) == 2
