"""Parts of bench/agent_fanout.py: the fake provider process and one module per tool."""
