"""The theory lives in the repository, and every reference to it resolves.

(a) No text file of the project cites the team's external theory notes (by their file name or in
    the ``<NOTES> §N`` form): the theory is held by ``docs/concepts/``, and code, docstrings,
    printed reports and docs cite those pages.
(b) Every reference ``docs/concepts/<page>.md#<anchor>`` (or ``concepts/<page>.md#<anchor>``, as a
    relative markdown link writes it) in code, docstrings, printed strings or docs names a page
    that exists and an anchor that one of its headings defines; every relative markdown link of a
    docs page (and of README.md) to another page resolves the same way.

Anchors are computed as the ``toc`` extension of mkdocs computes them: an explicit ``{#id}``
(attr_list) on the heading, else the slug of the heading text (lowercase, punctuation removed,
spaces to hyphens, ``_1``, ``_2`` appended to repeats). ``mkdocs build --strict`` (see
``tests/test_docs.py``) checks the links inside the docs once more with mkdocs itself
(``validation: links: anchors: warn`` in mkdocs.yml).
"""

from __future__ import annotations

import re
import subprocess
import unicodedata
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
CONCEPTS = DOCS / "concepts"

# the external notes' name, split so that this file does not match its own pattern
NOTES = "THEO" + "RY"
NOTES_REFERENCE = re.compile(NOTES + r"(?:\s*§|\.md\b)")
# docs/concepts/<page>.md#<anchor> in any text; the page alone is checked too
CONCEPT_REF = re.compile(r"(?<![\w-])(?:docs/)?concepts/(?P<page>[\w.-]+?\.md)(?:#(?P<anchor>[\w-]+))?")
FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})")
HEADING = re.compile(r"^(?P<level>#{1,6})[ \t]+(?P<title>.*?)[ \t]*$")
ATTRS = re.compile(r"[ \t]*\{:?(?P<attrs>[^{}]*)\}[ \t]*$")
INLINE_CODE = re.compile(r"(`+)(?P<code>.+?)\1")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\((?P<target><[^>]*>|[^)\s]+)(?:[ \t]+\"[^\"]*\")?\)")
REF_DEFINITION = re.compile(r"^[ \t]{0,3}\[[^\]]+\]:[ \t]*(?P<target>\S+)", re.MULTILINE)
# without git: skip what .gitignore ignores (and git's own folder)
SKIP_DIRS = {".git", ".venv", "site", "__pycache__", "node_modules", "build", "dist", "runs", "out",
             ".whl", ".gpu", ".pytest_cache", ".hypothesis", ".ruff_cache"}


def project_files() -> list[Path]:
    """Tracked files plus new ones git does not ignore (what the next commit can hold)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=ROOT, capture_output=True, check=True, timeout=60).stdout
        names = sorted({n for n in out.decode().split("\0") if n})
        return [ROOT / n for n in names if (ROOT / n).is_file()]
    except (OSError, subprocess.SubprocessError):  # no git (e.g. an unpacked sdist): walk the tree
        return sorted(p for p in ROOT.rglob("*") if p.is_file()
                      and not SKIP_DIRS & set(p.relative_to(ROOT).parts)
                      and not any(part.endswith(".egg-info") for part in p.parts))


def read_text(path: Path) -> str | None:
    """The file's text, or None for a binary file."""
    data = path.read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


@cache
def text_files() -> dict[str, str]:
    found = {}
    for path in project_files():
        text = read_text(path)
        if text is not None:
            found[path.relative_to(ROOT).as_posix()] = text
    return found


def outside_fences(text: str) -> list[tuple[int, str]]:
    """``(line number, line)`` for every markdown line that is not inside a fenced code block."""
    kept, fence = [], None
    for number, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if fence is None and m:
            fence = m[1]
        elif fence is not None:
            if line.strip().startswith(fence) and set(line.strip()) == {fence[0]}:
                fence = None
        else:
            kept.append((number, line))
    return kept


def slugify(text: str, separator: str = "-") -> str:
    """``markdown.extensions.toc.slugify``: ASCII, punctuation dropped, lowercase, spaces to '-'."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(rf"[{separator}\s]+", separator, text)


def heading_text(title: str) -> str:
    """What toc slugifies: the rendered text of a heading (code spans kept, markup dropped)."""
    title = re.sub(r"[ \t]+#+$", "", title)                           # closing hashes
    title = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", title)        # links -> their text
    title = INLINE_CODE.sub(lambda m: m["code"].strip(), title)
    title = re.sub(r"(\*{1,3})(\S(?:.*?\S)?)\1", r"\2", title)  # *emphasis*
    # _emphasis_ only at word edges: intra-word underscores (cli_energy_run) stay literal
    return re.sub(r"(?<!\w)(_{1,3})(\S(?:.*?\S)?)\1(?!\w)", r"\2", title)


def anchors_of(text: str) -> set[str]:
    """The heading anchors of a markdown page, as mkdocs' toc extension assigns them."""
    ids: set[str] = set()
    slugged = []
    for _, line in outside_fences(text):
        m = HEADING.match(line)
        if not m:
            continue
        title = m["title"]
        attrs = ATTRS.search(title)
        explicit = None
        if attrs:
            found = re.search(r"(?:^|\s)#(?P<id>[^\s}]+)", attrs["attrs"])
            explicit = found["id"] if found else None
            title = title[:attrs.start()]
        if explicit:
            ids.add(explicit)
        else:
            slugged.append(slugify(heading_text(title)))
    for slug in slugged:  # toc makes repeated slugs unique: slug, slug_1, slug_2, ...
        candidate, n = slug, 0
        while candidate in ids:
            n += 1
            candidate = f"{slug}_{n}"
        ids.add(candidate)
    return ids


@cache
def page_anchors(path: Path) -> frozenset[str] | None:
    """Heading anchors of a docs page; None when its anchors are generated (mkdocstrings `:::`)."""
    text = path.read_text(encoding="utf-8")
    if re.search(r"^:::[ \t]", text, re.MULTILINE):
        return None
    return frozenset(anchors_of(text))


def check_reference(page: Path, anchor: str | None, where: str) -> str | None:
    """An error message, or None when the page exists and defines the anchor."""
    if not page.is_file():
        return f"{where}: page {page.relative_to(ROOT).as_posix()} does not exist"
    if anchor:
        anchors = page_anchors(page)
        if anchors is not None and anchor not in anchors:
            return (f"{where}: {page.relative_to(ROOT).as_posix()} has no heading anchor "
                    f"#{anchor} (it has: {', '.join(sorted(anchors)) or 'none'})")
    return None


def markdown_files() -> list[str]:
    return [name for name in text_files()
            if name.endswith(".md") and (name.startswith("docs/") or name == "README.md")]


# --- the helpers compute anchors as mkdocs does ------------------------------------------------

def test_anchor_rules():
    page = ("# Title {#top}\n## Why the energy can only fall\n## A `derive` call: 2 steps\n"
            "```python\n# not a heading\n```\n## Why the energy can only fall\n"
            "### 93 % with random erasing, and 60 epochs (CPU)\n## Step {: #step-size .x}\n")
    assert anchors_of(page) == {"top", "why-the-energy-can-only-fall", "a-derive-call-2-steps",
                                "why-the-energy-can-only-fall_1", "step-size",
                                "93-with-random-erasing-and-60-epochs-cpu"}
    refs = [m.group("page", "anchor") for m in CONCEPT_REF.finditer(
        "see docs/concepts/dynamics.md#step-size, [x](../concepts/untying.md#probes) and "
        "concepts/legendre.md. Not myconcepts/a.md")]
    assert refs == [("dynamics.md", "step-size"), ("untying.md", "probes"), ("legendre.md", None)]
    assert NOTES_REFERENCE.search(NOTES + " §4.3") and NOTES_REFERENCE.search(f"({NOTES}.md)")
    assert not NOTES_REFERENCE.search("theory of everything")


def test_anchor_rules_agree_with_markdown():
    """Where the markdown package is installed (docs extra), its toc assigns the same ids."""
    markdown = pytest.importorskip("markdown")
    for name in markdown_files():
        text = (ROOT / name).read_text(encoding="utf-8")
        if "$" in "".join(line for _, line in outside_fences(text) if HEADING.match(line)):
            continue  # math in a heading is rendered by arithmatex, not by plain markdown
        md = markdown.Markdown(extensions=["toc", "attr_list", "tables", "fenced_code"])
        html = md.convert(text)
        ids = set(re.findall(r"<h[1-6][^>]*\bid=\"([^\"]+)\"", html))
        assert anchors_of(text) == ids, name


# --- (a) no citation of the external notes ------------------------------------------------------

def test_no_reference_to_external_theory_notes():
    hits = [f"{name}:{number}: {line.strip()}"
            for name, text in text_files().items()
            for number, line in enumerate(text.splitlines(), 1)
            if NOTES_REFERENCE.search(line)]
    assert not hits, ("cite docs/concepts/<page>.md#<anchor> instead of the external notes:\n"
                      + "\n".join(hits))


# --- (b) every concept reference and docs link resolves -----------------------------------------

def test_concept_references_resolve():
    errors, count = [], 0
    for name, text in text_files().items():
        for number, line in enumerate(text.splitlines(), 1):
            for m in CONCEPT_REF.finditer(line):
                count += 1
                error = check_reference(CONCEPTS / m["page"], m["anchor"], f"{name}:{number}")
                if error:
                    errors.append(error)
    assert count > 0, "no docs/concepts references found: is the pattern still right?"
    assert not errors, "\n".join(errors)


def test_docs_links_resolve():
    errors, count = [], 0
    for name in markdown_files():
        page = ROOT / name
        body = "\n".join(INLINE_CODE.sub("", line) for _, line in outside_fences(page.read_text()))
        targets = [m["target"].strip("<>") for m in LINK.finditer(body)]
        targets += [m["target"] for m in REF_DEFINITION.finditer(body)]
        for target in targets:
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) or target.startswith("/"):
                continue  # external (http:, mailto:) or site-absolute
            path, _, anchor = target.partition("#")
            path = path.split("?")[0]
            resolved = (page.parent / path).resolve() if path else page
            where = f"{name}: link {target!r}"
            count += 1
            if resolved.suffix == ".md" or not path:
                error = check_reference(resolved, anchor or None, where)
            elif not resolved.exists():
                error = f"{where}: {path} does not exist"
            else:
                error = None
            if error:
                errors.append(error)
    assert count > 0
    assert not errors, "\n".join(errors)

