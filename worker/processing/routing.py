"""Pattern routing: which processors receive an event of a given `type`.

Patterns are dot-separated segments matched against the dot-separated segments of `type`:

- a literal segment (`[a-z0-9_]+`) matches itself;
- `*` matches exactly one segment;
- `**` matches zero or more segments;
- `{a,b}` inside a segment matches any of the alternatives, e.g. `customer.{sms,email}.failed`,
  `customer.{sms,email}_x.sent` (several brace groups in one segment expand as a product).

`customer.loyalty.tier.*` matches `customer.loyalty.tier.upgraded` but not
`customer.loyalty.tier.expiration.changed`; `customer.loyalty.tier.**` matches both (and
`customer.loyalty.tier` itself, since `**` may match zero segments).

Fan-out order: `Router.resolve` returns every processor with at least one matching pattern,
each once, in the order of the `processors` sequence given to the Router (which is the load
order of `worker.processors.discovery.load_processors`: built-ins, then entry points, then
`--processors` modules, each in registration order).

Speed: all patterns of all processors are compiled into one segment trie, walked once per new
type as a small NFA (a set of trie nodes per segment). The pipeline keeps each type's routes
(worker.processing.planning: the one route cache), so a known type costs one dict lookup.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import structlog

from worker.errors import ConfigError
from worker.events.types import KNOWN_TYPES
from worker.processors.api import Processor

__all__ = ["CompiledPattern", "Router", "compile_pattern"]

_SEGMENT_CHARS = re.compile(r"[a-z0-9_{},*]+")
_LITERAL = re.compile(r"[a-z0-9_]+")
# Upper bound on the literal alternatives one pattern expands to (brace products).
_MAX_EXPANSIONS = 4096

STAR = "*"
DOUBLE_STAR = "**"


@dataclass(frozen=True, slots=True)
class CompiledPattern:
    """A validated pattern. `segments[i]` is `"*"`, `"**"` or a tuple of literal alternatives."""

    pattern: str
    segments: tuple[str | tuple[str, ...], ...]

    def matches(self, type_: str) -> bool:
        """Match one type (slow path, for tools and tests; the Router uses its trie)."""
        return _match_segments(self.segments, type_.split("."))


def _match_segments(segs: Sequence[str | tuple[str, ...]], parts: Sequence[str]) -> bool:
    # Iterative two-set NFA over pattern positions: state i = "segments[:i] consumed".
    states = _closure({0}, segs)
    for part in parts:
        nxt: set[int] = set()
        for i in states:
            if i == len(segs):
                continue
            seg = segs[i]
            if seg == DOUBLE_STAR:
                nxt.add(i)
            elif seg == STAR or part in seg:
                nxt.add(i + 1)
        states = _closure(nxt, segs)
        if not states:
            return False
    return len(segs) in states


def _closure(states: set[int], segs: Sequence[str | tuple[str, ...]]) -> set[int]:
    out = set(states)
    for i in sorted(states):
        j = i
        while j < len(segs) and segs[j] == DOUBLE_STAR:
            j += 1
            out.add(j)
    return out


def _expand_segment(seg: str, where: str) -> tuple[str, ...]:
    """Expand the brace groups of one literal segment: `a{b,c}d` -> (`abd`, `acd`)."""
    pieces: list[tuple[str, ...]] = []
    i = 0
    while i < len(seg):
        ch = seg[i]
        if ch == "{":
            end = seg.find("}", i + 1)  # balance was checked by _split_segments
            inner = seg[i + 1:end]
            if "{" in inner:
                raise ConfigError(f"{where}: nested braces in segment {seg!r} are not supported; "
                                  "list the alternatives in one brace group.")
            alts = inner.split(",")
            if any(not _LITERAL.fullmatch(a) for a in alts):
                raise ConfigError(f"{where}: each alternative in {{{inner}}} must be a non-empty "
                                  "literal of [a-z0-9_]; wildcards are whole segments only.")
            pieces.append(tuple(dict.fromkeys(alts)))
            i = end + 1
        elif ch == ",":
            raise ConfigError(f"{where}: ',' is only allowed inside a brace group, "
                              f"in segment {seg!r}.")
        else:
            j = i
            while j < len(seg) and seg[j] not in "{},":
                j += 1
            pieces.append((seg[i:j],))
            i = j
    out = tuple(dict.fromkeys("".join(p) for p in itertools.product(*pieces)))
    if len(out) > _MAX_EXPANSIONS:
        raise ConfigError(f"{where}: brace groups expand to {len(out)} alternatives "
                          f"(limit {_MAX_EXPANSIONS}); use '*' instead.")
    return out


def compile_pattern(pattern: str, processor: str | None = None) -> CompiledPattern:
    """Validate and compile one pattern; raise ConfigError naming the processor and pattern."""
    where = (f"processor {processor!r}: invalid pattern {pattern!r}" if processor
             else f"invalid pattern {pattern!r}")
    if not isinstance(pattern, str) or not pattern:
        raise ConfigError(f"{where}: a pattern must be a non-empty string such as "
                          "'customer.loyalty.tier.*'.")
    bad = sorted(set(_SEGMENT_CHARS.sub("", pattern.replace(".", ""))))
    if bad:
        raise ConfigError(f"{where}: characters {''.join(bad)!r} are not allowed; use lower-case "
                          "[a-z0-9_] segments separated by '.', '*', '**' and {a,b}.")
    segments: list[str | tuple[str, ...]] = []
    expansions = 1
    for seg in _split_segments(pattern, where):
        if seg == "":
            raise ConfigError(f"{where}: empty segment (a leading, trailing or doubled '.'); "
                              "remove the extra dot.")
        if "*" in seg:
            if seg not in (STAR, DOUBLE_STAR):
                raise ConfigError(f"{where}: segment {seg!r}: '*' and '**' must be a whole "
                                  "segment (use 'a.*' rather than 'a*').")
            if seg == DOUBLE_STAR and segments and segments[-1] == DOUBLE_STAR:
                continue  # `**.**` means the same as `**`
            segments.append(seg)
        else:
            alts = _expand_segment(seg, where)
            expansions *= len(alts)
            if expansions > _MAX_EXPANSIONS:
                raise ConfigError(f"{where}: brace groups expand to more than {_MAX_EXPANSIONS} "
                                  "types; use '*' instead.")
            segments.append(alts)
    return CompiledPattern(pattern=pattern, segments=tuple(segments))


def _split_segments(pattern: str, where: str) -> list[str]:
    """Check brace balance, then split on '.' (a '.' inside braces is reported as such)."""
    depth = 0
    for i, ch in enumerate(pattern):
        depth += (ch == "{") - (ch == "}")
        if depth < 0:
            raise ConfigError(f"{where}: unbalanced '}}' at position {i}; open it with '{{'.")
    if depth > 0:
        raise ConfigError(f"{where}: unbalanced '{{'; close it with '}}'.")
    segs: list[str] = []
    start = 0
    for i, ch in enumerate(pattern):
        depth += (ch == "{") - (ch == "}")
        if ch == "." and depth:
            raise ConfigError(f"{where}: '.' inside braces; alternatives are single segments "
                              "(write 'customer.{sms,email}.sent').")
        if ch == ".":
            segs.append(pattern[start:i])
            start = i + 1
    segs.append(pattern[start:])
    return segs


@dataclass(slots=True, eq=False)
class _Node:
    literals: dict[str, _Node] = field(default_factory=dict)
    star: _Node | None = None
    # The `**` child; a `**` node loops on itself for any segment.
    double_star: _Node | None = None
    loops: bool = False
    # Indexes (into Router.processors) of processors with a pattern ending here.
    terminal: set[int] = field(default_factory=set)


class Router:
    """Resolves an event type to the processors that receive it, in a fixed order."""

    def __init__(self, processors: Sequence[Processor],
                 known_types: Iterable[str] = KNOWN_TYPES, *, warn_unused: bool = True) -> None:
        """Compile every pattern (ConfigError naming processor and pattern if one is invalid).
        With `warn_unused`, log a warning per pattern that matches no known type: at startup
        that is probably a typo."""
        self.processors: tuple[Processor, ...] = tuple(processors)
        self.known_types: tuple[str, ...] = tuple(known_types)
        self._root = _Node()
        self.compiled: dict[str, tuple[CompiledPattern, ...]] = {}
        for index, proc in enumerate(self.processors):
            if proc.name in self.compiled:
                raise ConfigError(f"two processors are named {proc.name!r}; give each a "
                                  "unique name=.")
            if not proc.patterns:
                raise ConfigError(f"processor {proc.name!r} has no pattern; give "
                                  "@processor at least one.")
            compiled = tuple(compile_pattern(p, proc.name) for p in proc.patterns)
            self.compiled[proc.name] = compiled
            for cp in compiled:
                self._insert(cp, index)
        if warn_unused:
            self.log_unused_patterns()

    def log_unused_patterns(self) -> None:
        log = structlog.get_logger(__name__)
        for proc, pattern in self.unused_patterns():
            log.warning("pattern matches no known event type (a typo?)", processor=proc.name,
                        pattern=pattern, module=proc.module, known_types=len(self.known_types))

    def _insert(self, cp: CompiledPattern, index: int) -> None:
        nodes = [self._root]
        for seg in cp.segments:
            nxt: list[_Node] = []
            for node in nodes:
                if seg == STAR:
                    if node.star is None:
                        node.star = _Node()
                    nxt.append(node.star)
                elif seg == DOUBLE_STAR:
                    if node.double_star is None:
                        node.double_star = _Node(loops=True)
                    nxt.append(node.double_star)
                else:
                    for lit in seg:
                        child = node.literals.get(lit)
                        if child is None:
                            child = node.literals[lit] = _Node()
                        nxt.append(child)
            nodes = list({id(n): n for n in nxt}.values())
        for node in nodes:
            node.terminal.add(index)

    def resolve(self, type_: str) -> tuple[Processor, ...]:
        """The processors for `type_`, in fan-out order; () when none matches. Resolved afresh
        at each call (the pipeline keeps the answers)."""
        return tuple(self.processors[i] for i in sorted(self._match(type_)))

    def _match(self, type_: str) -> set[int]:
        states = self._epsilon([self._root])
        for part in type_.split("."):
            nxt: list[_Node] = []
            for node in states:
                child = node.literals.get(part)
                if child is not None:
                    nxt.append(child)
                if node.star is not None:
                    nxt.append(node.star)
                if node.loops:
                    nxt.append(node)
            if not nxt:
                return set()
            states = self._epsilon(nxt)
        found: set[int] = set()
        for node in states:
            found |= node.terminal
        return found

    @staticmethod
    def _epsilon(nodes: list[_Node]) -> list[_Node]:
        """Add the `**` children reachable without consuming a segment (zero-segment match)."""
        seen: dict[int, _Node] = {}
        stack = list(nodes)
        while stack:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen[id(node)] = node
            if node.double_star is not None:
                stack.append(node.double_star)
        return list(seen.values())

    def matching_types(self, pattern: str, processor: str | None = None) -> list[str]:
        """The known types one pattern matches, in known-types order."""
        cp = compile_pattern(pattern, processor)
        return [t for t in self.known_types if cp.matches(t)]

    def unused_patterns(self) -> list[tuple[Processor, str]]:
        """(processor, pattern) pairs matching none of the known types: probably typos."""
        unused: list[tuple[Processor, str]] = []
        for proc in self.processors:
            for cp in self.compiled[proc.name]:
                if not any(cp.matches(t) for t in self.known_types):
                    unused.append((proc, cp.pattern))
        return unused
