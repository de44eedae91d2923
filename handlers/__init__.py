"""Platform-independent command handlers: a neutral Request in, neutral Replies out.

Nothing here imports a platform library; adapters in `bot.adapters` do that.
"""

from handlers.context import Context
from handlers.router import handle_request

__all__ = ["Context", "handle_request"]
