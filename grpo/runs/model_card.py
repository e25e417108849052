"""Model cards: one layout for the GRPO run card (:func:`grpo.runs.run_dir.write_model_card`) and the
supervised recipes' checkpoint card (:func:`recipes._checkpoint.model_card`).

A card is Hub-style YAML front matter (:func:`front_matter`), a title, an introduction and
``## `` sections (:func:`render_card`). The front matter names a ``base_model`` and ``datasets``
only when they are hub ids: the hub rejects other values (local paths, ``embedded:`` specs),
which the card's text names instead.
"""

from __future__ import annotations

from pathlib import Path


def hub_id(spec) -> str | None:
    """``spec`` if it looks like a hub id (``owner/name``, not a local path or ``embedded:``/``synthetic:``).

    >>> hub_id("Qwen/Qwen2.5-0.5B-Instruct"), hub_id("embedded:minilm-l6"), hub_id("./runs/x")
    ('Qwen/Qwen2.5-0.5B-Instruct', None, None)
    """
    spec = str(spec or "")
    if ":" in spec or spec.startswith((".", "/", "~")) or spec.count("/") != 1 or Path(spec).exists():
        return None
    return spec


def front_matter(*, tags: list[str], base_model: str | None = None, datasets=(), pipeline_tag: str | None = None,
                 library_name: str = "transformers") -> str:
    """The YAML between a card's ``---`` lines (without them).

    Args:
        tags: card tags, e.g. ``["grpo", "trl", "grpo-toolkit"]``.
        base_model: the model spec training started from; written only if it is a hub id.
        datasets: dataset specs; the hub ids among them are written, sorted.
        pipeline_tag: the ``transformers.pipeline`` task that uses the checkpoint, if any.
        library_name: the library that loads the checkpoint.

    Returns:
        One ``key: value`` per line.

    >>> print(front_matter(tags=["a"], base_model="embedded:minilm-l6", datasets=["x/y", "gsm8k"]))
    library_name: transformers
    datasets: [x/y]
    tags: [a]
    """
    lines = [f"library_name: {library_name}"]
    if pipeline_tag:
        lines.append(f"pipeline_tag: {pipeline_tag}")
    if hub_id(base_model):
        lines.append(f"base_model: {base_model}")
    hub_datasets = sorted({d for d in map(hub_id, datasets) if d})
    if hub_datasets:
        lines.append(f"datasets: [{', '.join(hub_datasets)}]")
    lines.append(f"tags: [{', '.join(tags)}]")
    return "\n".join(lines)


def render_card(front: str, title: str, intro: str, sections: list[tuple[str, str]]) -> str:
    """A card's Markdown: front matter, ``# title``, the introduction, then ``## heading`` + body per section.

    Args:
        front: see :func:`front_matter`.
        title: the ``#`` heading.
        intro: paragraph(s) under the title.
        sections: ``[(heading, body), ...]`` in order.

    Returns:
        The text, ending with one newline.

    >>> print(render_card("tags: [a]", "run", "Trained.", [("Command", "grpo train")]))
    ---
    tags: [a]
    ---
    <BLANKLINE>
    # run
    <BLANKLINE>
    Trained.
    <BLANKLINE>
    ## Command
    <BLANKLINE>
    grpo train
    <BLANKLINE>
    """
    parts = [f"---\n{front}\n---", f"# {title}", intro.strip(),
             *(f"## {heading}\n\n{body.strip()}" for heading, body in sections)]
    return "\n\n".join(parts) + "\n"
