"""Cleaning and ids: one normal form for paragraph text, stable ids for records."""

from __future__ import annotations

import hashlib
import unicodedata


def squad_paragraph_id(title: str, paragraph: int) -> str:
    """The id of paragraph ``paragraph`` of SQuAD article ``title``: ``"{title}#{paragraph}"``.

    The SQuAD reader gives paragraphs this id and the evaluation maps each question's
    gold paragraph to it, so both must come from here.
    """
    return f"{title}#{paragraph}"


def clean_text(text: str) -> str:
    """Unicode NFC, every run of white space collapsed to one space, trimmed."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def text_id(title: str, text: str) -> str:
    """A stable id for a record that has none: a hash of its title and text."""
    return hashlib.sha1(f"{title}\n{text}".encode("utf-8")).hexdigest()[:16]


def text_digest(text: str) -> bytes:
    """A 16-byte BLAKE2b digest of a cleaned text: how de-duplication remembers texts without keeping them."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()
