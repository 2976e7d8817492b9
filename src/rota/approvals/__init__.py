"""Human approval gates: `ctx.approval(...)` in workflows, `@tool(requires_approval=...)`
for agent tool calls, decided with `rota approvals`, the HTTP API or the dashboard.
See docs/approvals.md."""

from ..storage.approval_records import ApprovalDecision, ApprovalRequest, may_decide
from .notify import ApprovalWebhook

__all__ = ["ApprovalDecision", "ApprovalRequest", "ApprovalWebhook", "may_decide"]
