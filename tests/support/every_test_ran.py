"""A pytest plugin: a run that reports on fewer tests than it collected fails.

pytest-xdist's ``--dist loadfile`` and ``loadgroup`` once ran 581 of 621 collected tests
here and said nothing: they queue tests by node id, and schemathesis's cases share one
(docs/development.md). This compares, on the process that reports (xdist's controller,
or pytest alone), the tests collected with the outcomes reported.
"""

from __future__ import annotations

import pytest


def unreported(session: pytest.Session) -> int:
    """How many collected tests have no outcome reported (0 when every one was answered
    for). A test's outcome is its call's report, or its setup's when that failed or
    skipped (it then has no call). Counted, not matched by name: schemathesis's tests
    share one node id between their cases."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return 0
    answered = sum(
        1
        for category, reports in reporter.stats.items()
        if category not in ("deselected", "warnings")
        for report in reports
        if isinstance(report, pytest.TestReport)
        and (report.when == "call" or (report.when == "setup" and not report.passed))
    )
    return session.testscollected - answered


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # A worker's own session reports nothing; a run stopped early (-x, a failure, ^C)
    # has its own reason for what it did not run.
    if hasattr(session.config, "workerinput") or exitstatus != pytest.ExitCode.OK:
        return
    missing = unreported(session)
    if missing > 0:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = f"{missing} of {session.testscollected} collected tests were never run or reported"
        if reporter is not None:
            reporter.write_line(f"ERROR: {message}", red=True, bold=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
