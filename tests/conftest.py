import os
import shutil
import threading
from pathlib import Path

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

FIXTURE = Path(__file__).parent / "fixtures" / "data"


@pytest.fixture
def fixture_data(tmp_path: Path) -> Path:
    """A writable copy of the committed fixture folders (30 labeled, 200 + 2 unlabeled, 100 test images)."""
    dest = tmp_path / "data"
    shutil.copytree(FIXTURE, dest)
    return dest


def pytest_timeout_set_timer(item: pytest.Item, settings) -> bool | None:
    """pytest-timeout's thread method, with the test's id on the line above the stack dump: under `-q` the
    plugin's own report is the stacks alone, and the test's frame is one of many there."""
    if settings.method != "thread":
        return None  # the plugin's own timer
    from pytest_timeout import timeout_timer

    def expire() -> None:
        capture = item.config.pluginmanager.getplugin("capturemanager")
        if capture:
            capture.suspend_global_capture(item)
        item.config.get_terminal_writer().line(f"\nTIMEOUT: {item.nodeid} ran past {settings.timeout:g} s")
        timeout_timer(item, settings)  # dumps every thread's stack, then os._exit(1)

    timer = threading.Timer(settings.timeout, expire)
    timer.daemon = True

    def cancel() -> None:
        timer.cancel()
        timer.join()

    item.cancel_timeout = cancel  # what the plugin's pytest_timeout_cancel_timer calls
    timer.start()
    return True
