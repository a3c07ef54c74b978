"""Readers and writers: JSONL, BRAT, PubTator and Hugging Face datasets (hf is imported on use:
it pulls in ``datasets``)."""
from distill.io.ada import read_ada
from distill.io.brat import read_brat
from distill.io.jsonl import FormatError, JsonlAppender, read_jsonl, write_jsonl
from distill.io.pubtator import read_pubtator
from distill.io.report import ReadReport

__all__ = ["FormatError", "JsonlAppender", "ReadReport", "read_ada", "read_brat", "read_jsonl", "read_pubtator", "write_jsonl"]
