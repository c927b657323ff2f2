"""A report as a list of blocks, rendered to Markdown (for repositories and terminals) and to a
self-contained HTML page (for browsers), so both always say the same thing.

Deliberately small: headings, paragraphs, bullet lists, tables and figures are all the compare and demo
reports need, and a dependency-free renderer keeps them readable in CI logs and on machines without
a Markdown toolchain.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

from nnunet_ext.atomic import atomic_write_text


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: list[str]


@dataclass(frozen=True)
class Table:
    """Cells are plain text; a cell written ``**like this**`` is bold in both renderings."""

    headers: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass(frozen=True)
class Figure:
    """An image file, referenced by a path relative to the report's folder."""

    path: str
    caption: str = ""


Block = Heading | Paragraph | Bullets | Table | Figure


@dataclass
class Document:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> Document:
        self.blocks.extend(blocks)
        return self


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(doc: Document) -> str:
    """GitHub-flavoured Markdown."""
    out = [f"# {doc.title}", ""]
    for block in doc.blocks:
        if isinstance(block, Heading):
            out += [f"{'#' * max(2, block.level)} {block.text}", ""]
        elif isinstance(block, Paragraph):
            out += [block.text, ""]
        elif isinstance(block, Bullets):
            out += [f"- {item}" for item in block.items] + [""]
        elif isinstance(block, Table):
            if block.caption:
                out += [f"*{block.caption}*", ""]
            out.append("| " + " | ".join(_md_cell(h) for h in block.headers) + " |")
            out.append("|" + "|".join("---" for _ in block.headers) + "|")
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
            out.append("")
        elif isinstance(block, Figure):
            out += [f"![{block.caption}]({block.path})", ""]
            if block.caption:
                out += [f"*{block.caption}*", ""]
    return "\n".join(out).rstrip() + "\n"


_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #bbb;padding:4px 8px;text-align:left}"
    "th{background:#eee}caption{caption-side:top;font-style:italic;text-align:left;padding-bottom:4px}"
    "img{max-width:100%}figcaption{font-style:italic}"
)


def _html_cell(text: str) -> str:
    if len(text) > 4 and text.startswith("**") and text.endswith("**"):
        return f"<strong>{html.escape(text[2:-2])}</strong>"
    return html.escape(text)


def to_html(doc: Document) -> str:
    """One HTML page; images are linked relative to the page, so keep the report folder together."""
    esc = html.escape
    out = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'>", f"<title>{esc(doc.title)}</title>",
           f"<style>{_STYLE}</style></head><body>", f"<h1>{esc(doc.title)}</h1>"]
    for block in doc.blocks:
        if isinstance(block, Heading):
            level = min(max(2, block.level), 6)
            out.append(f"<h{level}>{esc(block.text)}</h{level}>")
        elif isinstance(block, Paragraph):
            out.append(f"<p>{esc(block.text)}</p>")
        elif isinstance(block, Bullets):
            out.append("<ul>" + "".join(f"<li>{esc(item)}</li>" for item in block.items) + "</ul>")
        elif isinstance(block, Table):
            caption = f"<caption>{esc(block.caption)}</caption>" if block.caption else ""
            head = "".join(f"<th>{esc(str(h))}</th>" for h in block.headers)
            body = "".join("<tr>" + "".join(f"<td>{_html_cell(str(c))}</td>" for c in row) + "</tr>"
                           for row in block.rows)
            out.append(f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif isinstance(block, Figure):
            caption = f"<figcaption>{esc(block.caption)}</figcaption>" if block.caption else ""
            out.append(f"<figure><img src='{esc(block.path)}' alt='{esc(block.caption)}'>{caption}</figure>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write_report(doc: Document, folder: Path, stem: str = "report") -> tuple[Path, Path]:
    """Write ``stem.md`` and ``stem.html`` into ``folder`` (atomically); returns both paths."""
    folder = Path(folder)
    md = atomic_write_text(folder / f"{stem}.md", to_markdown(doc))
    page = atomic_write_text(folder / f"{stem}.html", to_html(doc))
    return md, page
