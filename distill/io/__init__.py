"""Readers and writers: JSONL, BRAT, PubTator and Hugging Face datasets."""
from distill.io.brat import read_brat
from distill.io.jsonl import FormatError, JsonlAppender, read_jsonl, write_jsonl
from distill.io.report import ReadReport

__all__ = ["FormatError", "JsonlAppender", "ReadReport", "read_brat", "read_jsonl", "write_jsonl"]
