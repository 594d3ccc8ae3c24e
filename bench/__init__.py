"""Side-by-side benchmarks of job runners on one local RabbitMQ.

Run ``python -m bench.run --help``. Each runner (a raw aiormq loop, Dramatiq,
Celery, and later roger-actors itself) implements :class:`bench.common.Runner`.
The peers (Dramatiq, Celery) are imported only from this package.
"""
