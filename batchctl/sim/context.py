"""What every part of a running simulator shares: the scenario, the records, the database
reporter, when configured the webhook sender, and the carrier (batchctl.sim.carrier)."""

from __future__ import annotations

from dataclasses import dataclass

from livekit.protocol.models import ParticipantInfo, Room

from batchctl.sim.carrier import Carrier
from batchctl.sim.reports import Reporter
from batchctl.sim.scenario import Scenario
from batchctl.sim.stats import SimStats
from batchctl.sim.webhooks import WebhookSender, event


@dataclass(frozen=True)
class SimContext:
    scenario: Scenario
    stats: SimStats
    reporter: Reporter
    webhooks: WebhookSender | None
    carrier: Carrier

    def notify(self, name: str, room: Room, participant: ParticipantInfo | None = None) -> None:
        """Queues a webhook event, if webhooks are on."""
        if self.webhooks is not None:
            self.webhooks.send(event(name, room, participant))
