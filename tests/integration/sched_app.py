"""An app with many one-second schedules, for the multi-process scheduler test."""

import os

from rota import App, every

app = App(os.environ.get("ROTA_DATABASE_URL"))

for index in range(20):

    def tick(ctx: object) -> None:
        return None

    app.add(tick, name=f"tick{index:02d}", schedule=every("1s"), overlap="allow")
