"""Model cards: one layout for the GRPO run card (:func:`grpo.runs.run_dir.write_model_card`) and the
supervised recipes' checkpoint card (:func:`recipes._model_card.model_card`).

A card is the Hub's YAML metadata (:func:`front_matter`: ``base_model``, ``datasets``,
``library_name``, ``tags``, ``model-index``), a title, an introduction and ``## `` sections
(:func:`render_card`). The metadata names a ``base_model`` and ``datasets`` only as Hub ids (the
Hub rejects local paths); the offline specs are written as what they stand for
(``embedded:smollm2-135m-instruct`` -> ``HuggingFaceTB/SmolLM2-135M-Instruct``, ``gsm8k`` ->
``openai/gsm8k``), and the card's text names the spec itself.
"""

from __future__ import annotations

from pathlib import Path


def hub_id(spec) -> str | None:
    """``spec`` if it looks like a hub id (``owner/name``, not a local path or ``embedded:``/``synthetic:``).

    >>> hub_id("Qwen/Qwen2.5-0.5B-Instruct"), hub_id("embedded:minilm-l6"), hub_id("./runs/x")
    ('Qwen/Qwen2.5-0.5B-Instruct', None, None)
    """
    spec = str(spec or "")
    if ":" in spec or spec.startswith((".", "/", "~")) or spec.count("/") != 1 or Path(spec).exists() \
            or spec.lower().endswith((".jsonl", ".json", ".csv", ".parquet", ".txt", ".yaml", ".gz")):
        return None
    return spec


# Offline specs -> the Hub id of what they are: the embedded models' sources and the vendored GSM8K
HUB_SOURCES = {"embedded:smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct",
               "embedded:minilm-l6": "sentence-transformers/all-MiniLM-L6-v2",
               "gsm8k": "openai/gsm8k"}


def hub_source(spec) -> str | None:
    """The Hub id a model or dataset spec stands for: itself if a hub id, the source of an offline spec, else None.

    >>> hub_source("embedded:smollm2-135m-instruct"), hub_source("gsm8k"), hub_source("data/x.jsonl")
    ('HuggingFaceTB/SmolLM2-135M-Instruct', 'openai/gsm8k', None)
    """
    return HUB_SOURCES.get(str(spec or "")) or hub_id(spec)


def front_matter(*, tags: list[str], base_model: str | None = None, datasets=(), pipeline_tag: str | None = None,
                 library_name: str = "transformers", model_name: str | None = None,
                 eval_results: list[dict] | None = None) -> str:
    """The Hub model-card metadata: the YAML between a card's ``---`` lines (without them).

    Written by ``huggingface_hub.ModelCardData``, so ``huggingface_hub.ModelCard`` reads it back.

    Args:
        tags: card tags, e.g. ``["grpo", "trl", "grpo-toolkit"]``.
        base_model: the model spec training started from; written as its Hub id (:func:`hub_source`), if any.
        datasets: dataset specs; their Hub ids (:func:`hub_source`) are written, sorted.
        pipeline_tag: the ``transformers.pipeline`` task that uses the checkpoint, if any.
        library_name: the library that loads the checkpoint.
        model_name, eval_results: the ``model-index``: one ``{"metric", "value", "name", "dataset",
            "dataset_name", "split"}`` per result (``dataset``: a Hub id or spec); none without a model name.

    Returns:
        YAML text.

    >>> print(front_matter(tags=["a"], base_model="embedded:minilm-l6", datasets=["x/y", "data.jsonl"]))
    base_model: sentence-transformers/all-MiniLM-L6-v2
    datasets:
    - x/y
    library_name: transformers
    tags:
    - a
    """
    from huggingface_hub import EvalResult, ModelCardData

    results = [EvalResult(task_type=pipeline_tag or "text-generation", dataset_type=r["dataset"],
                          dataset_name=r["dataset_name"], dataset_split=r.get("split"), metric_type=r["metric"],
                          metric_value=r["value"], metric_name=r.get("name")) for r in (eval_results or [])]
    data = ModelCardData(library_name=library_name, pipeline_tag=pipeline_tag, base_model=hub_source(base_model),
                         datasets=sorted({d for d in map(hub_source, datasets) if d}) or None, tags=list(tags),
                         model_name=model_name if results else None, eval_results=results or None)
    return data.to_yaml()


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
