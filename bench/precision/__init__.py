"""Per-tool parts of bench/schedule_precision.py.

Each case runs in its own subprocess and prints ONE JSON line:

    python -m bench.precision.rota_case --db postgresql --window 60
    python -m bench.precision.apscheduler_case --window 60

rota's case starts two more processes, bench.precision.rota_scheduler and
bench.precision.rota_worker, so that the scheduler's CPU is measured on its own.
"""
