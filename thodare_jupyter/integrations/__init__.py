"""Ways in and out of the runtime: tracing hooks, webhooks, an ASGI app."""
