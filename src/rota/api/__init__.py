"""rota's HTTP API: webhook ingest and health now; runs, approvals, costs and the dashboard
mount on the same application as route modules (see factory.py)."""

from .factory import ROUTE_MODULES, RouteModule, create_api
from .server import ApiServer, ListenError

__all__ = ["ROUTE_MODULES", "ApiServer", "ListenError", "RouteModule", "create_api"]
