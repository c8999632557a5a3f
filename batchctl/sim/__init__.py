"""A LiveKit simulator for batchctl's tests, demo and benchmarks: **not** a LiveKit server.

It serves the parts of LiveKit's Twirp API batchctl uses (agent dispatch, rooms, outbound SIP)
to the real ``livekit-api`` client, and runs simulated voice agents that report scripted call
outcomes to batchctl through ``batchctl.report_call_status``. What happens to each call comes
from a deterministic Scenario; what the simulator saw is in ``Simulator.stats``.

    sim = Simulator(credentials=LiveKitCredentials(key, secret), database_url=...,
                    scenario=Scenario.load(path))
    url = await sim.start()   # LiveKitAPI(url, key, secret) talks to it
    ...
    await sim.stop()
"""

from batchctl.sim.fields import ScenarioError
from batchctl.sim.scenario import Scenario
from batchctl.sim.server import Simulator
from batchctl.sim.stats import SimStats, StatsSnapshot

__all__ = ["Scenario", "ScenarioError", "SimStats", "Simulator", "StatsSnapshot"]
