"""`python -m services.console`: serve the console on CONSOLE_HTTP_HOST:CONSOLE_HTTP_PORT."""

from __future__ import annotations

import uvicorn

from services.console.app import create_app
from services.console.settings import ConsoleSettings


def main() -> None:
    settings = ConsoleSettings()
    uvicorn.run(create_app(settings), host=settings.http_host, port=settings.http_port, access_log=False,
                proxy_headers=False)


if __name__ == "__main__":
    main()
