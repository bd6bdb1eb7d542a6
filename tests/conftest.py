import os
import shutil
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
