"""The fake OpenRouter, a test double also behind `--mock` and the benchmarks: scripted faults (faults),
reply bodies in OpenRouter's shapes (replies), the Batch API (batches), its behaviour (openrouter) and the wire (server:
aiohttp on 127.0.0.1, httpx.MockTransport, `python -m runner.fake.server`). Its JSON values come
from runner.plan.synth, which is product code.

May import: every layer up to runner.check; never testing or cli. Inside, one way:
faults, replies <- batches <- openrouter <- server.
"""

from .faults import Fault
from .openrouter import FakeOpenRouter

__all__ = ["FakeOpenRouter", "Fault"]
