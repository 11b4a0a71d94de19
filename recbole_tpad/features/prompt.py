"""The item prompt (knowledge view): "Item: {title}. Brand: {brand}. Category: {categories}."

Visual tokens, when the item has an image, go before this text and the summary suffix after it;
both are added by the backbone (:meth:`Backbone.prepare`), so a prompt here is text only.
"""

DEFAULT_LABELS = {"title": "Item", "brand": "Brand", "categories": "Category"}


def field_label(name, labels):
    return labels.get(name) or DEFAULT_LABELS.get(name) or name.replace("_", " ").capitalize()


def format_item_prompt(record, labels=None):
    """Text prompt of one :class:`ItemRecord`; an item with no text is named by its id."""
    labels = labels or {}
    parts = []
    for name, value in record.fields.items():
        if value:
            parts.append(f"{field_label(name, labels)}: {value}" + ("" if value.endswith((".", "!", "?")) else "."))
    if not parts:
        parts.append(f"Item: {record.item_id}.")
    return " ".join(parts)


def template_description(text_fields, labels=None):
    """The template as a string, for the cache manifest: "Item: {title}. Brand: {brand}."."""
    labels = labels or {}
    return " ".join(f"{field_label(name, labels)}: {{{name}}}." for name in text_fields)
