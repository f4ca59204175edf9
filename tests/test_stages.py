"""Long steps outside training: a bar on a terminal, a start and an end line elsewhere, nothing when quiet."""

from __future__ import annotations

import io
import re

import pytest

from ssl_tune.stages import stage


def test_line_mode_prints_a_start_and_an_end_line_with_the_count(capsys):
    with stage("packing train split", 500, detail="in 3 shards", enabled=False) as advance:
        for n in (200, 200, 100):
            advance(n)
    out, err = capsys.readouterr()
    assert err == ""
    start, end = out.splitlines()
    assert start == "packing train split: 500 images in 3 shards ..."
    assert re.fullmatch(r"packing train split: 500 images in \d+\.\d s", end), end


def test_line_mode_without_a_total_says_done(capsys):
    with stage("fitting linear probe", detail="(384 x 512 features)", enabled=False):
        pass
    start, end = capsys.readouterr().out.splitlines()
    assert start == "fitting linear probe (384 x 512 features) ..."
    assert re.fullmatch(r"fitting linear probe: done in \d+\.\d s", end), end


def test_line_mode_prints_no_end_line_when_the_stage_fails(capsys):
    with pytest.raises(RuntimeError), stage("extracting features (train)", 10, enabled=False):
        raise RuntimeError("boom")
    assert capsys.readouterr().out == "extracting features (train): 10 images ...\n"


def test_bar_mode_draws_on_the_given_stream_and_prints_no_lines(capsys):
    stream = io.StringIO()
    with stage("extracting features (test)", 300, enabled=True, file=stream) as advance:
        advance(100)
        advance(200)
    assert capsys.readouterr().out == ""
    drawn = stream.getvalue()
    assert "extracting features (test):" in drawn and "/300 " in drawn and "images/s" in drawn, drawn
    assert drawn.endswith("\r") and drawn.rsplit("\r", 2)[-2].strip() == "", drawn  # wiped at the end (leave=False)


def test_the_default_follows_whether_the_stream_is_a_terminal(capsys):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal, pipe = Terminal(), io.StringIO()
    with stage("a", 1, file=terminal) as advance:
        advance(1)
    with stage("b", 1, file=pipe) as advance:
        advance(1)
    assert "a" in terminal.getvalue() and pipe.getvalue() == ""
    assert capsys.readouterr().out.splitlines()[0] == "b: 1 images ..."


def test_quiet_shows_nothing(capsys):
    stream = io.StringIO()
    with stage("kNN monitor", 10, quiet=True, enabled=True, file=stream) as advance:
        advance(10)
    assert stream.getvalue() == "" and capsys.readouterr() == ("", "")
