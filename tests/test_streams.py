"""Alternate data streams: naming rules."""

import errno
import os

import pytest

import cimfs


def test_stream_names_differing_only_in_case_are_rejected(tmp_path):
    with pytest.raises(cimfs.PathError) as e:
        with cimfs.create(tmp_path, "s.cim") as w:
            w.add_file("f", data=b"1")
            w.add_stream("f:Zone", data=b"a")
            w.add_stream("f:Zone", data=b"b")  # same name: replaces
            w.add_stream("f:ZONE", data=b"c")
    assert e.value.errno == errno.EEXIST
    assert os.listdir(tmp_path) == []
