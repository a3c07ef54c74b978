"""Readers and writers: JSONL, BRAT, PubTator and Hugging Face datasets."""
from distill.io.jsonl import FormatError, JsonlAppender, read_jsonl, write_jsonl

__all__ = ["FormatError", "JsonlAppender", "read_jsonl", "write_jsonl"]
