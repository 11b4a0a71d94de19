"""The item prompt (knowledge view): "Item: {title}. Brand: {brand}. Category: {categories}."

Visual tokens, when the item has an image, go before this text and the summary suffix after it;
both are added by the backbone (:meth:`Backbone.prepare`), so a prompt here is text only.
"""

DEFAULT_LABELS = {"title": "Item", "brand": "Brand", "categories": "Category"}


def field_label(name, labels):
    return labels.get(name) or DEFAULT_LABELS.get(name) or name.replace("_", " ").capitalize()


def item_prompt_spans(record, labels=None):
    """``(prompt, title_span, knowledge_span)`` of one :class:`ItemRecord`.

    ``title_span`` is the ``(start, end)`` character range of the first non-empty field's value (the
    title, the item's name in session prompts); ``knowledge_span`` the range of every later field
    (brand, categories, description: the held-out knowledge of the generation task), or ``None``
    when the item has no other field. An item with no text is named by its id.
    """
    labels = labels or {}
    parts, title_span = [], None
    for name, value in record.fields.items():
        if not value:
            continue
        head = f"{field_label(name, labels)}: "
        start = sum(len(p) + 1 for p in parts) + len(head)
        if title_span is None:
            title_span = (start, start + len(value.rstrip(".!?")))
        parts.append(head + value + ("" if value.endswith((".", "!", "?")) else "."))
    if not parts:
        head = "Item: "
        parts.append(f"{head}{record.item_id}.")
        title_span = (len(head), len(head) + len(str(record.item_id)))
    prompt = " ".join(parts)
    first = len(parts[0])
    knowledge_span = (first + 1, len(prompt)) if len(parts) > 1 else None
    return prompt, title_span, knowledge_span


def format_item_prompt(record, labels=None):
    """Text prompt of one :class:`ItemRecord`; an item with no text is named by its id."""
    return item_prompt_spans(record, labels)[0]


def template_description(text_fields, labels=None):
    """The template as a string, for the cache manifest: "Item: {title}. Brand: {brand}."."""
    labels = labels or {}
    return " ".join(f"{field_label(name, labels)}: {{{name}}}." for name in text_fields)
