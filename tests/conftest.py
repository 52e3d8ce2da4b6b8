import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
_CANDIDATES = [
    os.environ.get("CIMFS_SHARED", ""),
    str(ROOT.parent / "shared"),
    str(ROOT / "shared"),
]


def _shared() -> pathlib.Path:
    for c in _CANDIDATES:
        if c and (pathlib.Path(c) / "fixtures" / "windows-v3-hello" / "test.cim").exists():
            return pathlib.Path(c)
    why = ("the Windows fixture (shared/fixtures/windows-v3-hello beside the checkout) is missing; "
           "set CIMFS_SHARED to the folder that holds fixtures/")
    if os.environ.get("CI"):
        pytest.fail(why)  # CI always has it: its absence is an error there
    pytest.skip(why)


@pytest.fixture(scope="session")
def fixture_dir() -> pathlib.Path:
    """The image Windows' own cimfs.dll wrote (read-only)."""
    return _shared() / "fixtures" / "windows-v3-hello"


@pytest.fixture(scope="session")
def fixture_image(fixture_dir) -> pathlib.Path:
    return fixture_dir / "test.cim"


def assert_sound(path) -> None:
    """An image the writer produced is sound: the engine's own verify() finds
    nothing, the independent struct parser (tests/_layout.py) accepts every
    structural rule of the spec, and no temporary files were left beside it."""
    import cimfs
    from _layout import Layout

    path = pathlib.Path(path)
    with cimfs.open(path) as img:
        assert img.verify() == []
    Layout(path).check_all()
    leftovers = [n for n in os.listdir(path.parent) if n.startswith(".cimfs-tmp")]
    assert leftovers == []


@pytest.fixture
def sound():
    """The :func:`assert_sound` helper as a fixture."""
    return assert_sound
