"""Network: connection state, the validators and the peers this node knows."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from desktop.screens.common import clock, fill_table, make_table, short
from desktop.snapshot import Snapshot

HEADERS = ["Peer", "Address", "Role", "Connected", "Last seen"]


class NetworkScreen(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        self.connection = QLabel("Not connected: the node is starting.")
        self.connection.setWordWrap(True)
        self.network = QLabel("")
        self.validators = QLabel("Validators: none seen yet")
        self.alert = QLabel("")
        self.alert.setWordWrap(True)
        self.alert.setStyleSheet("color: #b35900;")
        self.table = make_table(HEADERS)
        for widget in (self.connection, self.network, self.validators, self.alert, self.table):
            layout.addWidget(widget)

    def show_core_state(self, state: str, text: str) -> None:
        self.connection.setText(f"Node: {state}. {text}")

    def show_snapshot(self, snap: Snapshot) -> None:
        self.connection.setText(
            f"Connected to {snap.connections} peer(s)"
            if snap.connections
            else "Not connected to any peer yet: check the network in Settings."
        )
        self.network.setText(
            f"Network: {snap.network_name or '-'}   chain JSON-RPC: {snap.rpc_url or '-'}\n"
            f"Registry: {snap.registry or '-'}   token: {snap.token or '-'}"
        )
        validators = [p for p in snap.peers if "validator" in p.roles]
        self.validators.setText(
            "Validators: "
            + (
                ", ".join(
                    f"{short(v.address)} ({'online' if v.connected else 'offline'})" for v in validators
                )
                or "none seen yet"
            )
        )
        fill_table(
            self.table,
            [
                [short(p.peer_id, 8), p.address, p.roles, "yes" if p.connected else "no", clock(p.last_seen)]
                for p in snap.peers
            ],
        )

    def on_event_miner_watchdog(self, event: Any) -> None:
        self.alert.setText(f"{event.problem}: {event.action}")

    def on_event_miner_newer_protocol(self, event: Any) -> None:
        self.alert.setText(
            f"A peer speaks a newer protocol ({event.version}, we speak {event.ours}): please update MAGNET."
        )
