"""`ssl-tune bench pipeline|sweep|search`: the new spellings, plain `bench FLAGS` (the pipeline benchmark) and the
old `bench-sweep` / `bench-search` parse to the same handler and settings. Argument parsing only: no benchmark
runs."""

from __future__ import annotations

import pytest

from ssl_tune.cli import build_parser, main

PIPELINE = ["--method", "byol", "--steps", "5", "--device", "cpu", "--set", "image_size=16", "--json", "b.json"]
SWEEP = ["--space", "s.yaml", "--data-dir", "d", "--num-samples", "2", "--no-baseline", "--set", "epochs=1"]
SEARCH = ["--method", "simsiam", "--out", "o", "--preset", "gpu", "--budget-trials", "4", "--set", "epochs=1"]


def _parsed(argv: list[str]) -> dict:
    return vars(build_parser().parse_args(argv))


@pytest.mark.parametrize(
    ("spellings", "flags"),
    [
        ([["bench"], ["bench", "pipeline"]], PIPELINE),
        ([["bench", "sweep"], ["bench-sweep"]], SWEEP),
        ([["bench", "search"], ["bench-search"]], SEARCH),
    ],
    ids=["pipeline", "sweep", "search"],
)
def test_each_spelling_of_a_benchmark_parses_to_the_same_handler_and_settings(spellings, flags):
    new, old = (_parsed([*words, *flags]) for words in spellings)
    assert new["handler"] is old["handler"]
    assert {key: new[key] for key in old if key not in ("command", "benchmark")} == {
        key: value for key, value in old.items() if key not in ("command", "benchmark")
    }


def test_plain_bench_is_the_pipeline_benchmark_with_its_defaults():
    plain, named = _parsed(["bench"]), _parsed(["bench", "pipeline"])
    assert plain["handler"] is named["handler"] and plain["handler"].__name__ == "_run_bench"
    assert {key: plain[key] for key in named if key != "benchmark"} == {
        key: value for key, value in named.items() if key != "benchmark"
    }
    assert (plain["method"], plain["steps"], plain["batch_size"]) == ("simsiam", 30, 256)


@pytest.mark.parametrize("words", [["bench", "sweep"], ["bench-sweep"], ["bench", "search"], ["bench-search"]])
def test_help_of_each_spelling(words, capsys):
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([*words, "--help"])
    assert done.value.code == 0
    assert ("--num-samples" if "sweep" in words[-1] else "--budget-trials") in capsys.readouterr().out


def test_bench_help_lists_the_benchmarks_and_top_level_help_the_old_names(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in ("pipeline", "sweep", "search", "--steps"))
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    assert "bench-sweep" in out and "bench-search" in out


def test_bad_bench_input_is_one_line_and_exit_2_before_anything_runs(capsys):
    with pytest.raises(SystemExit) as done:
        main(["bench", "nope"])
    assert done.value.code == 2 and "invalid choice: 'nope'" in capsys.readouterr().err
    for words in (["bench", "sweep"], ["bench-sweep"]):
        assert main([*words, "--num-samples", "0"]) == 2
        err = capsys.readouterr().err
        assert err == f"ssl-tune {words[0]}: error: --num-samples 0: must be at least 1\n", err
    assert main(["bench", "pipeline", "--steps", "0"]) == 2
    assert capsys.readouterr().err == "ssl-tune bench: error: --steps must be positive, not 0\n"
