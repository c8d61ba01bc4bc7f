"""The OpenRouter protocol: messages of parts (messages), pure request bodies (request), replies and
usage (reply), reply checking: JSON and schema (verdict), requests in flight (flow), the HTTP client
(client, over the production transport; it, transport, stream and failures, the table of
httpx/aiohttp exceptions, are the only modules that see them), streamed replies (stream: SSE and
the StreamingClient), the model catalogue (catalog), what a reply cost (billing) and OpenRouter's
Batch API (batches).

May import: runner.errors, runner.outcomes, runner.spec, runner.plan. Inside, one way: messages <- request <- catalog
<- billing; messages <- reply; failures, flow, reply, transport <- client <- stream; reply <- billing; client,
failures, reply <- batches. messages sits in layer 1 (it imports nothing of ours) so that plan/render can build
messages.
"""
