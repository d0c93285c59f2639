"""`cogent listen`: the webhook receiver, served by uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from cogent_cli.cli.common import stderr, workspace_from
from cogent_cli.errors import UsageError


def listen(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Interface to bind (put a TLS proxy in front).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on.")] = 8080,
) -> None:
    """Receive webhooks from Marketplacer, Swap, Clarus, Scend and Peoplevox into the inbox.

    Each request is verified (HMAC, signed JWT or URL token), stored raw before it is answered, then
    normalised. Paths: /webhooks/marketplacer, /webhooks/swap, /webhooks/clarus/SECRET,
    /webhooks/scend/SECRET, /webhooks/peoplevox/SECRET/EVENT (see docs/webhooks.md).

    Example: cogent listen --host 127.0.0.1 --port 8080
    """
    import uvicorn

    from cogent_cli.listen import create_app, describe_endpoints, resolve_secrets

    workspace = workspace_from(ctx)
    config = workspace.config
    secrets = resolve_secrets(config)
    console = stderr()
    for system, path, state in describe_endpoints(config, secrets):
        console.print(f"  {path:<38} {system:<13} {state}", soft_wrap=True, markup=False)
    if not secrets:
        raise UsageError(
            "No source has a webhook secret, so every delivery would be refused",
            hint="Enable a source in cogent.toml and store its secret, e.g. "
            "`cogent auth set marketplacer --name webhook_secret` (docs/webhooks.md).",
        )
    # Workspace.store() is called on the server's store thread, which owns the connection.
    app = create_app(config, workspace.store, secrets)
    console.print(f"Listening on http://{host}:{port} (Ctrl-C to stop)")
    # Uvicorn's access log would print URL tokens; the app logs requests itself, tokens masked.
    uvicorn.run(app, host=host, port=port, access_log=False, log_config=None, server_header=False)
