"""Who may do what: organisers from the config and the stored list, and chat managers."""

from __future__ import annotations

from bot.protocol import Request
from handlers.context import Context

CONSOLE_OPERATOR = "operator"


async def is_organiser(ctx: Context, request: Request) -> bool:
    """Configured or stored organisers; the console's operator always is one."""
    platform, sender = request.chat.platform, request.sender
    if platform == "console":
        return True
    configured = {
        "telegram": {str(i) for i in ctx.config.organisers.telegram},
        "matrix": set(ctx.config.organisers.matrix),
    }.get(platform, set())
    if sender in configured:
        return True
    return (platform, sender) in await ctx.storage.organisers()
