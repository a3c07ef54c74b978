"""The SQLite response cache: keys, persistence, thread safety, opting out."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from teachers.cache import CachedResponse, ResponseCache, open_cache


def test_roundtrip_and_key_sensitivity(tmp_path):
    c = ResponseCache(tmp_path / "c.sqlite")
    r = CachedResponse('{"entities": []}', 120, 7, "stop")
    c.put("fp", "v1", "request text", r)
    assert c.get("fp", "v1", "request text") == r
    assert c.get("fp2", "v1", "request text") is None  # another model / server / decoding
    assert c.get("fp", "v2", "request text") is None  # another prompt version
    assert c.get("fp", "v1", "request text.") is None  # another note
    assert len(c) == 1


def test_persists_across_reopen_and_replaces(tmp_path):
    path = tmp_path / "sub" / "c.sqlite"
    c = ResponseCache(path)
    c.put("fp", "v", "t", CachedResponse("a", 1, 1))
    c.put("fp", "v", "t", CachedResponse("b", 2, 2, batch=True))
    c.close()
    again = ResponseCache(path)
    assert again.get("fp", "v", "t") == CachedResponse("b", 2, 2, "stop", True) and len(again) == 1


def test_concurrent_writers(tmp_path):
    c = ResponseCache(tmp_path / "c.sqlite")
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda i: c.put("fp", "v", f"text {i}", CachedResponse(str(i), i, i)), range(200)))
    assert len(c) == 200 and c.get("fp", "v", "text 123").content == "123"


def test_open_cache_options(tmp_path):
    assert open_cache(False) is None and open_cache("off") is None
    c = open_cache(str(tmp_path / "x.sqlite"))
    assert isinstance(c, ResponseCache) and open_cache(c) is c
