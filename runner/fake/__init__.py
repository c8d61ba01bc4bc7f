"""The fake OpenRouter, a test double also behind `--mock` and the benchmarks: scripted faults (faults),
reply bodies in OpenRouter's shapes (replies), streamed replies as SSE events (streaming), a
tool-using model's calls (toolcalls), the Batch API (batches), its behaviour (openrouter) and the wire (server:
aiohttp on 127.0.0.1, httpx.MockTransport, `python -m runner.fake.server`). Its JSON values come
from runner.plan.synth, which is product code.

May import: every layer up to runner.check; never testing or cli. Inside, one way:
faults, replies, streaming; replies <- toolcalls, batches; all <- openrouter <- server.
"""

from .faults import Fault
from .openrouter import FakeOpenRouter

__all__ = ["FakeOpenRouter", "Fault"]
