#!/usr/bin/env python3
"""Extract every distinct published example of a Voucherify *customer activity*
(id "evcus_...", type "customer....") and of a *webhook delivery* (id "whs_...",
with an "event" object) from the whole history of a git mirror of
voucherifyio/voucherify-openapi.

Usage:
    python3 extract.py [MIRROR_GIT_DIR] [--out DIR] [--no-prefilter]

Writes DIR/activities.json  (default DIR = directory of this script):
    [{"source": {"path", "commit", "commit_date", "pointer" | "line", ...},
      "value": <example as published>}, ...]
and DIR/webhooks.json (same shape, webhook deliveries), DIR/report.json (stats).

Provenance: "commit" is the FIRST (oldest by committer date, over all refs)
commit that introduced a version of "path" containing that exact example.
Dedupe key: canonical JSON (sort_keys, compact separators).

History walk (bounded, robust to the blobs that are absent from the mirror):
  * one `git log --all --raw --no-renames --diff-merges=first-parent` gives
    every (commit, path, blob) introduction;
  * each distinct blob is read once (`git cat-file --batch`), in chronological
    order; only blobs containing "evcus_" / "whs_" are looked at;
  * for JSON blobs a cheap textual prefilter (hash of the indentation-delimited
    object around every `"id": "evcus_|whs_"` line, or of the whole line for
    other hits, e.g. escaped examples inside description strings) skips blobs
    whose example-bearing regions were all seen before; others are fully
    parsed and walked, yielding JSON pointers.  --no-prefilter disables it.
  * examples embedded in strings (markdown code blocks in descriptions) and in
    .md/.mdx/other text files are found by raw_decode-ing backwards from each
    `"id": "evcus_|whs_"` hit, with a lenient retry (comments, trailing commas).
"""
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

BINARY_EXT = ('.png', '.jpg', '.jpeg', '.gif', '.ico', '.jar', '.zip', '.gz',
              '.pdf', '.woff', '.woff2', '.ttf', '.eot', '.webp', '.mp4', '.svg')
NEEDLES = (b'evcus_', b'whs_')
ID_RE = re.compile(r'"id"\s*:\s*"(evcus_|whs_)[^"]*"')
ID_LINE_RE = re.compile(rb'^[ \t]*"id"[ \t]*:[ \t]*"(?:evcus_|whs_)')
HIT_RE = re.compile(rb'evcus_|whs_')
DECODER = json.JSONDecoder()


def is_activity(d: Any) -> bool:
    return (isinstance(d, dict) and isinstance(d.get('id'), str)
            and d['id'].startswith('evcus_') and isinstance(d.get('type'), str)
            and d['type'].startswith('customer.'))


def is_evcus_other(d: Any) -> bool:
    return (isinstance(d, dict) and isinstance(d.get('id'), str)
            and d['id'].startswith('evcus_') and not is_activity(d))


def is_webhook(d: Any) -> bool:
    return (isinstance(d, dict) and isinstance(d.get('id'), str)
            and d['id'].startswith('whs_') and isinstance(d.get('event'), dict))


def canon(v: Any) -> str:
    return json.dumps(v, sort_keys=True, separators=(',', ':'), ensure_ascii=False)


def esc(tok: Any) -> str:
    return str(tok).replace('~', '~0').replace('/', '~1')


# ---------------------------------------------------------------- text extraction
def _balanced(text: str, start: int) -> int | None:
    """End index (exclusive) of the {...} starting at start, string-aware."""
    depth, i, n, ins = 0, start, len(text), False
    while i < n:
        c = text[i]
        if ins:
            if c == '\\':
                i += 1
            elif c == '"':
                ins = False
        elif c == '"':
            ins = True
        elif c in '{[':
            depth += 1
        elif c in '}]':
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


def _lenient(s: str) -> Any:
    out, i, n, ins = [], 0, len(s), False
    while i < n:  # drop // and /* */ comments outside strings
        c = s[i]
        if ins:
            out.append(c)
            if c == '\\' and i + 1 < n:
                out.append(s[i + 1])
                i += 1
            elif c == '"':
                ins = False
        elif c == '"':
            ins = True
            out.append(c)
        elif s.startswith('//', i):
            j = s.find('\n', i)
            i = n if j < 0 else j
            continue
        elif s.startswith('/*', i):
            j = s.find('*/', i + 2)
            i = n if j < 0 else j + 2
            continue
        else:
            out.append(c)
        i += 1
    s = re.sub(r',(\s*[}\]])', r'\1', ''.join(out))
    return json.loads(s)


def text_examples(text: str, max_back: int = 400) -> Iterator[tuple[int, Any, bool]]:
    """Yield (offset_of_open_brace, obj, lenient) for objects whose own "id"
    starts with evcus_/whs_."""
    done = set()
    for m in ID_RE.finditer(text):
        idval = text[m.start():m.end()].split(':', 1)[1].strip()[1:-1]
        pos, tries = m.start(), 0
        while tries < max_back:
            pos = text.rfind('{', 0, pos)
            if pos < 0:
                break
            tries += 1
            obj, end, lenient = None, None, False
            try:
                obj, end = DECODER.raw_decode(text, pos)
            except ValueError:
                e = _balanced(text, pos)
                if e is not None and e > m.start():
                    try:
                        obj, end, lenient = _lenient(text[pos:e]), e, True
                    except ValueError:
                        obj = None
            if isinstance(obj, dict) and end > m.start():
                # innermost enclosing object: the "id" is its own key
                if obj.get('id') == idval and pos not in done:
                    done.add(pos)
                    yield pos, obj, lenient
                break
        # not found -> unparseable, silently skipped (counted by caller)


def line_info(text: str, pos: int) -> tuple[int, int | None]:
    line = text.count('\n', 0, pos) + 1
    # opening fence of the enclosing code block, if any
    fence = None
    before = text[:pos]
    fences = [mm.start() for mm in re.finditer(r'(?m)^[ \t]*(```|~~~)', before)]
    if len(fences) % 2 == 1:
        fence = before.count('\n', 0, fences[-1]) + 1
    return line, fence


# ---------------------------------------------------------------- JSON walking
def walk_json(root: Any) -> Iterator[tuple[str, str, Any, dict[str, Any]]]:
    """Yield (pointer, kind, value, extra) for activities/webhooks/other evcus
    objects, and for examples embedded in string values."""
    stack = [('', root)]
    while stack:
        ptr, x = stack.pop()
        if isinstance(x, dict):
            if is_activity(x):
                yield ptr, 'activity', x, {}
            elif is_evcus_other(x):
                yield ptr, 'other_evcus', x, {}
            if is_webhook(x):
                yield ptr, 'webhook', x, {}
            for k in reversed(list(x)):
                stack.append((ptr + '/' + esc(k), x[k]))
        elif isinstance(x, list):
            for i in range(len(x) - 1, -1, -1):
                stack.append((ptr + '/' + str(i), x[i]))
        elif isinstance(x, str) and ('evcus_' in x or 'whs_' in x) and '{' in x:
            for pos, obj, len_ in text_examples(x):
                line, fence = line_info(x, pos)
                extra = {'string_line': line}
                if fence:
                    extra['string_code_block_line'] = fence
                if len_:
                    extra['lenient_parse'] = True
                for kind, v in classify_tree(obj, ''):
                    yield ptr, kind, v[1], dict(extra, **({'sub_pointer': v[0]} if v[0] else {}))


def classify_tree(obj: Any, base: str) -> list[tuple[str, tuple[str, Any]]]:
    """Activities/webhooks inside an object parsed from text (incl. nested)."""
    out = []
    stack = [(base, obj)]
    while stack:
        p, x = stack.pop()
        if isinstance(x, dict):
            if is_activity(x):
                out.append(('activity', (p, x)))
            elif is_evcus_other(x):
                out.append(('other_evcus', (p, x)))
            if is_webhook(x):
                out.append(('webhook', (p, x)))
            for k in reversed(list(x)):
                stack.append((p + '/' + esc(k), x[k]))
        elif isinstance(x, list):
            for i in range(len(x) - 1, -1, -1):
                stack.append((p + '/' + str(i), x[i]))
    return out


def region_keys(data: bytes) -> set[bytes]:
    """Cheap textual fingerprint of the example-bearing regions of a JSON blob."""
    keys = set()
    covered_until = -1
    for m in HIT_RE.finditer(data):
        s = m.start()
        if s < covered_until:
            continue
        ls = data.rfind(b'\n', 0, s) + 1
        le = data.find(b'\n', s)
        le = len(data) if le < 0 else le
        line = data[ls:le]
        if ID_LINE_RE.match(line):
            ind = len(line) - len(line.lstrip())
            a = ls
            while a > 0:  # previous lines until indentation < ind
                pa = data.rfind(b'\n', 0, a - 1) + 1
                pl = data[pa:a - 1]
                a = pa
                if pl.strip() and len(pl) - len(pl.lstrip()) < ind:
                    break
            b = le
            while b < len(data):
                nb = data.find(b'\n', b + 1)
                nb = len(data) if nb < 0 else nb
                nl = data[b + 1:nb]
                b = nb
                if nl.strip() and len(nl) - len(nl.lstrip()) < ind:
                    break
            keys.add(hashlib.sha1(data[a:b]).digest())
            # whs_ object region covers its nested event; keep scanning though
            covered_until = le
        else:
            keys.add(hashlib.sha1(line).digest())
            covered_until = le
    return keys


# ---------------------------------------------------------------- git plumbing
def git(mirror: str, *args: str) -> bytes:
    return subprocess.run(['git', '-C', mirror, *args], check=True,
                          stdout=subprocess.PIPE).stdout


def introductions(mirror: str) -> list[tuple[int, str, str, str]]:
    out = git(mirror, 'log', '--all', '--raw', '--no-renames', '--no-abbrev',
              '--diff-merges=first-parent', '--format=C %H %ct')
    seen, res, commit, ct = set(), [], None, 0
    for line in out.decode('utf-8', 'surrogateescape').splitlines():
        if line.startswith('C '):
            _, commit, ct = line.split(' ')
            ct = int(ct)
        elif line.startswith(':'):
            meta, path = line.split('\t', 1)
            f = meta.split()
            blob, status = f[3], f[4]
            if status == 'D' or set(blob) == {'0'} or f[1] == '160000':
                continue
            if path.lower().endswith(BINARY_EXT):
                continue
            res.append((ct, commit, path, blob))
    res.sort(key=lambda r: (r[0], r[2]))
    first = []
    for r in res:
        if (r[2], r[3]) not in seen:
            seen.add((r[2], r[3]))
            first.append(r)
    return first


class BlobReader:
    def __init__(self, mirror: str, blobs: list[str]) -> None:
        self.p = subprocess.Popen(['git', '-C', mirror, 'cat-file', '--batch'],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  bufsize=1 << 20)
        self.t = threading.Thread(target=self._feed, args=(blobs,), daemon=True)
        self.t.start()

    def _feed(self, blobs: list[str]) -> None:
        for b in blobs:
            self.p.stdin.write((b + '\n').encode())
        self.p.stdin.close()

    def next(self) -> bytes | None:
        h = self.p.stdout.readline().split()
        if len(h) == 2 and h[1] == b'missing':
            return None
        d = self.p.stdout.read(int(h[2]))
        self.p.stdout.read(1)
        return d


# ---------------------------------------------------------------- main
def main() -> None:
    args = sys.argv[1:]
    out_dir = os.path.dirname(os.path.abspath(__file__))
    prefilter = True
    if '--out' in args:
        i = args.index('--out')
        out_dir = args[i + 1]
        del args[i:i + 2]
    if '--no-prefilter' in args:
        args.remove('--no-prefilter')
        prefilter = False
    mirror = args[0] if args else '/work/.mirror/voucherifyio+voucherify-openapi/repo'
    t0 = time.time()

    intro = introductions(mirror)
    uniq_blobs = []
    seen_b = set()
    for _ct, _c, _p, b in intro:
        if b not in seen_b:
            seen_b.add(b)
            uniq_blobs.append(b)
    reader = BlobReader(mirror, uniq_blobs)
    content_hit = {}   # blob -> bool (contains needle) ; None = missing
    blob_data = {}
    results = {'activity': {}, 'webhook': {}, 'other_evcus': {}}
    seen_regions = set()
    stats = {'introductions': len(intro), 'distinct_blobs': len(uniq_blobs),
             'missing_blobs': 0, 'missing_by_path': {}, 'blobs_with_hits': 0,
             'blobs_fully_processed': 0, 'blobs_skipped_by_prefilter': 0,
             'json_parse_failures': []}
    # read blobs lazily in the same order we first need them
    order_iter = iter(uniq_blobs)

    def get(blob: str) -> bool | None:
        while blob not in content_hit:
            b = next(order_iter)
            d = reader.next()
            if d is None:
                content_hit[b] = None
            elif any(n in d for n in NEEDLES):
                content_hit[b] = True
                blob_data[b] = d
            else:
                content_hit[b] = False
        return content_hit[blob]

    def add(kind: str, value: Any, src: dict[str, Any]) -> None:
        k = canon(value)
        if k not in results[kind]:
            results[kind][k] = {'source': src, 'value': value}

    # a blob already seen at an earlier (path, commit) can yield nothing new:
    # all its examples are already recorded with an older provenance.
    done_blobs = set()
    for ct, commit, path, blob in intro:
        if blob in done_blobs:
            continue
        done_blobs.add(blob)
        h = get(blob)
        if h is None:
            stats['missing_blobs'] += 1
            stats['missing_by_path'][path] = stats['missing_by_path'].get(path, 0) + 1
        if not h:
            continue
        data = blob_data.pop(blob)
        stats['blobs_with_hits'] += 1
        date = time.strftime('%Y-%m-%d', time.gmtime(ct))
        base = {'path': path, 'commit': commit, 'commit_date': date}
        is_json = path.lower().endswith('.json')
        if is_json and prefilter:
            keys = region_keys(data)
            if keys <= seen_regions:
                stats['blobs_skipped_by_prefilter'] += 1
                continue
            seen_regions |= keys
        stats['blobs_fully_processed'] += 1
        text = data.decode('utf-8', 'replace')
        root = None
        if is_json:
            try:
                root = json.loads(text)
            except ValueError:
                stats['json_parse_failures'].append([path, commit])
        if root is not None:
            for ptr, kind, v, extra in walk_json(root):
                add(kind, v, dict(base, pointer=ptr, **extra))
        else:
            for pos, obj, len_ in text_examples(text):
                line, fence = line_info(text, pos)
                for kind, (sub, v) in classify_tree(obj, ''):
                    src = dict(base, line=fence or line, object_line=line)
                    if sub:
                        src['sub_pointer'] = sub
                    if len_:
                        src['lenient_parse'] = True
                    add(kind, v, src)
    reader.p.wait()

    os.makedirs(out_dir, exist_ok=True)
    acts = list(results['activity'].values())
    hooks = list(results['webhook'].values())
    other = list(results['other_evcus'].values())
    with open(os.path.join(out_dir, 'activities.json'), 'w') as f:
        json.dump(acts, f, indent=2, ensure_ascii=False)
    with open(os.path.join(out_dir, 'webhooks.json'), 'w') as f:
        json.dump(hooks, f, indent=2, ensure_ascii=False)
    with open(os.path.join(out_dir, 'other_evcus.json'), 'w') as f:
        json.dump(other, f, indent=2, ensure_ascii=False)
    v = [a['value'] for a in acts]
    stats.update({
        'activities': len(acts),
        'activities_with_data_object': sum(isinstance(x.get('data'), dict) for x in v),
        'activities_without_group_id': sum('group_id' not in x for x in v),
        'activities_with_data_json': sum('data_json' in x for x in v),
        'webhooks': len(hooks),
        'webhooks_with_customer_activity_event': sum(
            is_activity(h['value']['event']) for h in hooks),
        'other_evcus_objects_not_customer_type': len(other),
        'seconds': round(time.time() - t0, 1),
    })
    with open(os.path.join(out_dir, 'report.json'), 'w') as f:
        json.dump(stats, f, indent=2)
    print(json.dumps({k: v for k, v in stats.items() if k != 'json_parse_failures'}, indent=2))
    print('json parse failures:', len(stats['json_parse_failures']))


if __name__ == '__main__':
    main()
