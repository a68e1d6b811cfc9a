"""Pipeline text: parsing into groups of passes, printing back, option values by the type of
the pass's field, and errors that say what is wrong and show where."""

from __future__ import annotations

import pytest

from neffkit.errors import NeffkitError
from neffkit.passes import parse_pipeline, registry
from neffkit.passes.pipeline import (
    DEFAULT_MAX_ITER,
    MAX_DEPTH,
    Group,
    PipelineSyntaxError,
    make_pass,
)


def test_pipeline_text_round_trips() -> None:
    g = parse_pipeline("dedup, cse ,(dedup{copies=false},cse,dce){max-iter=3}")
    assert g.spec() == "dedup,cse,(dedup{copies=false},cse,dce){max-iter=3}"


def test_the_top_level_is_a_plain_group_and_parentheses_make_a_repeated_one() -> None:
    top = parse_pipeline("dce,(cse,(dedup))")
    assert (top.repeat, top.max_iter) == (False, 1)
    assert [type(i).__name__ for i in top.items] == ["EliminateDeadCode", "Group"]
    outer = top.items[1]
    assert isinstance(outer, Group)
    assert (outer.repeat, outer.max_iter) == (True, DEFAULT_MAX_ITER)
    inner = outer.items[1]
    assert isinstance(inner, Group) and inner.repeat
    # the default iteration cap is not printed, any other is
    assert top.spec() == "dce,(cse,(dedup))"
    assert parse_pipeline("(cse){max-iter=10}").spec() == "(cse)"
    assert parse_pipeline("(cse){ max-iter = 4 }").spec() == "(cse){max-iter=4}"


def test_option_values_take_the_type_of_the_field() -> None:
    # built-in options of each type: bool (dedup), int and float (fold), str (simplify)
    top = parse_pipeline("dedup{copies=FALSE},fold{max-bytes=7,max-growth=3},simplify{disable=12}")
    dedup, fold, simplify = top.items
    assert dedup.copies is False
    assert (fold.max_bytes, fold.max_growth) == (7, 3.0) and isinstance(fold.max_growth, float)
    assert simplify.disable == "12"  # a number given to a string option is text
    (simplify,) = parse_pipeline("simplify{disable=true}").items
    assert simplify.disable == "true"
    (fold,) = parse_pipeline("fold{}").items
    assert fold == registry.get_pass("fold")()


def test_a_pass_prints_only_its_non_default_options() -> None:
    text = "fold{max-growth=1.5,allow-live-copies=true}"
    assert parse_pipeline(text).spec() == text
    assert parse_pipeline("fold{max-bytes=0}").spec() == "fold"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dedup{copies=1}", "option 'copies' of 'dedup' takes true or false"),
        ("fold{max-bytes=true}", "option 'max-bytes' of 'fold' takes an integer"),
        ("fold{max-bytes=1.5}", "takes an integer"),
        ("fold{max-bytes=-1}", "takes a non-negative integer"),
        ("fold{max-growth=true}", "takes a number"),
        ("fold{max-growth=-0.5}", "takes a non-negative number"),
        ("fold{max-growth=nan}", "takes a non-negative number"),
        ("fold{max-growth=inf}", "takes a non-negative number"),
        ("fold{nope=1}", r"has no option 'nope' \(its options: max-bytes, max-growth, "),
    ],
)
def test_bad_option_values_are_refused(text: str, message: str) -> None:
    with pytest.raises(PipelineSyntaxError, match=message):
        parse_pipeline(text)


def test_a_pass_without_options_says_so() -> None:
    with pytest.raises(PipelineSyntaxError, match=r"its options: none"):
        parse_pipeline("dce{max=1}")


@pytest.mark.parametrize(
    "text, message",
    [
        ("dedup,,cse", "expected a pass name"),
        ("nosuchpass", "unknown pass 'nosuchpass'"),
        ("(cse,dce", r"expected '\)'"),
        ("cse)", r"unexpected '\)'"),
        ("cse{nope=1}", "has no option 'nope'"),
        ("dedup{copies=3}", "takes true or false"),
        ("dedup{copies}", "expected '='"),
        ("dedup{copies=}", "option 'copies' has no value"),
        ("dedup{copies=true", "expected '}'"),
        ("(cse){max-iter=0}", "positive integer"),
        ("(cse){max-iter=2.5}", "positive integer"),
        ("(cse){max-iter=2,nope=1}", r"unknown group option\(s\) \['nope'\]"),
        ("()", "empty group"),
        ("", "empty pipeline"),
        ("  ", "empty pipeline"),
    ],
)
def test_bad_pipelines_say_where(text: str, message: str) -> None:
    with pytest.raises(PipelineSyntaxError, match=message):
        parse_pipeline(text)


def test_syntax_errors_are_neffkit_errors() -> None:
    assert issubclass(PipelineSyntaxError, NeffkitError)


def test_the_caret_points_at_the_bad_pass_name() -> None:
    with pytest.raises(PipelineSyntaxError) as e:
        parse_pipeline("dedup,nosuchpass")
    _, shown, caret = str(e.value).splitlines()
    assert shown == "  dedup,nosuchpass"
    assert caret.index("^") == shown.index("nosuchpass")


def test_a_long_pipeline_is_shown_around_the_error_only() -> None:
    text = "dce," * 30 + "nosuchpass," + "cse," * 30 + "dce"
    with pytest.raises(PipelineSyntaxError) as e:
        parse_pipeline(text)
    _, shown, caret = str(e.value).splitlines()
    assert shown.startswith("  ...") and shown.endswith("...")
    assert len(shown) <= 2 + 3 + 80 + 3
    assert shown[caret.index("^") :].startswith("nosuchpass")


def test_nesting_is_bounded() -> None:
    fits = "(" * MAX_DEPTH + "dce" + ")" * MAX_DEPTH
    assert parse_pipeline(fits).spec() == fits
    deeper = "(" + fits + ")"
    with pytest.raises(PipelineSyntaxError, match=f"nested more than {MAX_DEPTH} deep"):
        parse_pipeline(deeper)


def test_make_pass_builds_from_kebab_case_options() -> None:
    fold = registry.get_pass("fold")
    p = make_pass(fold, {"max-bytes": 10, "allow-live-copies": True})
    assert p.spec() == "fold{max-bytes=10,allow-live-copies=true}"
    assert make_pass(fold, {}) == fold()
