"""Property tests: the router (trie + cache) against a small, obviously-correct reference."""

from __future__ import annotations

import itertools
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from worker.errors import ConfigError
from worker.events import Event
from worker.events.types import KNOWN_TYPES
from worker.processing.routing import Router, compile_pattern
from worker.processors.api import Context, Processor

# --- reference implementation -------------------------------------------------------------

_VALID_SEGMENT = re.compile(r"\*|\*\*|(?:[a-z0-9_]+|\{[a-z0-9_]+(?:,[a-z0-9_]+)*\})+")


def ref_valid(pattern: str) -> bool:
    return pattern != "" and all(_VALID_SEGMENT.fullmatch(s) for s in pattern.split("."))


def ref_expand(pattern: str) -> list[list[str]]:
    """Every brace alternative spelled out: a list of plain segment lists."""
    per_segment: list[list[str]] = []
    for seg in pattern.split("."):
        parts = re.split(r"(\{[^}]*\})", seg)
        choices = [p[1:-1].split(",") if p.startswith("{") else [p] for p in parts]
        per_segment.append(["".join(c) for c in itertools.product(*choices)])
    return [list(c) for c in itertools.product(*per_segment)]


def ref_match_segments(segs: list[str], parts: list[str]) -> bool:
    if not segs:
        return not parts
    head = segs[0]
    if head == "**":
        return ref_match_segments(segs[1:], parts) or (
            bool(parts) and ref_match_segments(segs, parts[1:]))
    if not parts:
        return False
    return (head == "*" or head == parts[0]) and ref_match_segments(segs[1:], parts[1:])


def ref_match(pattern: str, type_: str) -> bool:
    return any(ref_match_segments(s, type_.split(".")) for s in ref_expand(pattern))


# --- strategies ---------------------------------------------------------------------------

WORDS = ["a", "b", "ab", "c_1"]
word = st.sampled_from(WORDS)
brace = st.lists(word, min_size=1, max_size=3).map(lambda ws: "{" + ",".join(ws) + "}")
literal_segment = st.lists(st.one_of(word, brace), min_size=1, max_size=2).map("".join)
segment = st.one_of(literal_segment, st.just("*"), st.just("**"))
pattern_st = st.lists(segment, min_size=1, max_size=5).map(".".join)
type_st = st.lists(word, min_size=1, max_size=6).map(".".join)
# Arbitrary strings over the pattern alphabet plus a few characters that are never allowed.
junk_st = st.text(alphabet="ab.*{},_Z -", max_size=12)


def _noop(event: Event, ctx: Context) -> None:
    return None


# --- properties ---------------------------------------------------------------------------

@settings(max_examples=400, deadline=None)
@given(pattern=pattern_st, type_=type_st)
def test_compiled_pattern_agrees_with_reference(pattern: str, type_: str) -> None:
    assert compile_pattern(pattern).matches(type_) == ref_match(pattern, type_)


@settings(max_examples=200, deadline=None)
@given(patterns=st.lists(st.lists(pattern_st, min_size=1, max_size=3), min_size=1, max_size=6),
       types=st.lists(type_st, min_size=1, max_size=10))
def test_router_fan_out_agrees_with_reference(patterns: list[list[str]],
                                              types: list[str]) -> None:
    procs = [Processor(name=f"p{i}", patterns=tuple(ps), func=_noop)
             for i, ps in enumerate(patterns)]
    router = Router(procs, warn_unused=False)
    for type_ in types + types:  # the second pass is served from the cache
        expected = tuple(p for p in procs if any(ref_match(x, type_) for x in p.patterns))
        assert router.resolve(type_) == expected


@settings(max_examples=100, deadline=None)
@given(pattern=pattern_st)
def test_router_agrees_with_reference_on_known_types(pattern: str) -> None:
    router = Router([Processor(name="p", patterns=(pattern,), func=_noop)], warn_unused=False)
    for type_ in KNOWN_TYPES:
        assert bool(router.resolve(type_)) == ref_match(pattern, type_)


@settings(max_examples=1000, deadline=None)
@given(pattern=junk_st)
def test_validation_agrees_with_grammar(pattern: str) -> None:
    try:
        compile_pattern(pattern, "p")
    except ConfigError as exc:
        assert not ref_valid(pattern), f"rejected a valid pattern: {exc}"
        assert repr(pattern) in str(exc)
    else:
        assert ref_valid(pattern), "accepted an invalid pattern"
