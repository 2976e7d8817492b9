"""Human approval gates: `ctx.approval(...)` in workflows, `@tool(requires_approval=...)`
for agent tool calls, decided with `rota approvals`, the HTTP API or the dashboard.
See docs/approvals.md."""

from .notify import ApprovalWebhook
from .records import ApprovalDecision, ApprovalRequest, may_decide

__all__ = ["ApprovalDecision", "ApprovalRequest", "ApprovalWebhook", "may_decide"]
