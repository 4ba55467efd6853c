"""meshbench.workbench: ipywidgets panels, Polars data helpers and Altair plots.

* :class:`Dashboard` (and the single panels) are thin views of a :class:`MeshFeed`, which
  folds the node's pushed event stream;
* :mod:`meshbench.workbench.data`: rewards per peer, reputation history, the fee market,
  task latency, Parquet export, simulated runs as frames;
* :mod:`meshbench.workbench.plots`: Altair charts of those frames (imported on use);
* :class:`FederationDesk`: govern a running mesh's federation (propose, vote, activate).
"""

from __future__ import annotations

from meshbench.workbench.data import (
    error_rate_vs_redundancy,
    export_parquet,
    fee_market,
    open_trace,
    reputation_history,
    rewards_per_peer,
    simulate,
    task_latency,
)
from meshbench.workbench.federation import FederationDesk
from meshbench.workbench.feed import FeedError, MeshFeed, score_breakdown
from meshbench.workbench.panels import (
    Dashboard,
    EscrowPanel,
    OffersPanel,
    PeersPanel,
    PolicyPanel,
    PublishForm,
    ReceiptsPanel,
    ReputationPanel,
    TasksPanel,
)

__all__ = [
    "Dashboard",
    "EscrowPanel",
    "FederationDesk",
    "FeedError",
    "MeshFeed",
    "OffersPanel",
    "PeersPanel",
    "PolicyPanel",
    "PublishForm",
    "ReceiptsPanel",
    "ReputationPanel",
    "TasksPanel",
    "error_rate_vs_redundancy",
    "export_parquet",
    "fee_market",
    "open_trace",
    "reputation_history",
    "rewards_per_peer",
    "score_breakdown",
    "simulate",
    "task_latency",
]
