"""The fake time most integration tests start at, shared so their numbers agree."""

START = 1_700_000_000.0  # 2023-11-14T22:13:20Z
HOUR = 3600.0
