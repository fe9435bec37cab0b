"""``python -m rtlibvirt.cli.docs``: make the generated blocks of docs/ anew (``make docs``).

Not a user command (it is not registered on ``rtlibvirt``): it rewrites the
key references and check tables of the pages in ``rtlibvirt.reference.PAGES``
from the code's own tables. ``--check`` changes nothing and exits 3 when a
page differs from what the code makes.
"""

from __future__ import annotations

from pathlib import Path

import click

from rtlibvirt.errors import EXIT_DIFFERS, EXIT_INVALID


@click.command()
@click.argument(
    "docs_dir",
    default="docs",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
)
@click.option("--check", is_flag=True, help="Change nothing; exit 3 when a page is stale.")
def docs(docs_dir: Path, check: bool) -> None:
    """Regenerate the generated blocks of the pages in DOCS_DIR (default: docs)."""
    from rtlibvirt import reference
    from rtlibvirt.kernel.files import atomic_write

    stale: list[tuple[Path, str]] = []
    for page in reference.PAGES:  # every page made anew before any is written
        path = docs_dir / page
        text = path.read_text(encoding="utf-8")
        try:
            new = reference.regenerate(page, text)
        except reference.BlockError as exc:
            click.echo(f"error: {exc}; nothing was changed", err=True)
            raise click.exceptions.Exit(EXIT_INVALID) from None
        if new != text:
            stale.append((path, new))
    for path, new in stale:
        if check:
            click.echo(f"{path} differs from what the code makes: run `make docs`", err=True)
        else:
            atomic_write(path, new.encode("utf-8"))
            click.echo(f"updated {path}", err=True)
    if check and stale:
        raise click.exceptions.Exit(EXIT_DIFFERS)


if __name__ == "__main__":  # pragma: no cover
    docs()
