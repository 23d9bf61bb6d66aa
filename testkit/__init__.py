"""Test support shared by tests/ and scripts/: the servers, portfolios and processes that
the test suite and the benchmark scripts both start or build.

`testkit` may import `worker` (it builds its rows and queues its notices), never `tests`
or `scripts`: both of those import it. It is not shipped: the wheel packages `worker`
alone (pyproject.toml, [tool.hatch.build.targets.wheel]); an editable install
(`pip install -e .`) puts this checkout's root on sys.path, so `import testkit` works
from the tests, from `python scripts/bench_x.py` and from `python -m testkit.smtp` alike.
"""
