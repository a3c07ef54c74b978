"""RxNavClient over real HTTP against the loopback fake RxNav server (tests/fake_rxnav.py)."""
from __future__ import annotations

import time

import pytest

from ontologies.rxnorm import RateLimiter, RxNavClient, RxNavError
from tests.fake_rxnav import FakeRxNav


@pytest.fixture
def server():
    with FakeRxNav() as srv:
        yield srv


def client(server, tmp_path=None, **kw) -> RxNavClient:
    kw.setdefault("backoff", 0.01)
    kw.setdefault("max_backoff", 0.05)
    return RxNavClient(base_url=server.url, cache_path=(tmp_path / "rxnav.sqlite") if tmp_path else None, **kw)


def test_rxcui_by_name(server):
    c = client(server)
    assert c.rxcui("ibuprofen") == ["5640"]
    assert c.rxcui("Advil") == ["153010"]
    assert c.rxcui("no such drug") == []
    assert server.requests[0][1].startswith("/REST/rxcui.json?name=ibuprofen")


def test_approximate_term_deduplicates_candidates_by_rxcui(server):
    c = client(server)
    raw = c.get_json("approximateTerm.json", {"term": "ibuprofen", "maxEntries": 10})
    raw_rxcuis = [x["rxcui"] for x in raw["approximateGroup"]["candidate"]]
    assert raw_rxcuis.count("5640") == 3  # one candidate per atom in the real API
    cands = c.approximate("ibuprofen")
    rxcuis = [x.rxcui for x in cands]
    assert rxcuis[0] == "5640" and len(rxcuis) == len(set(rxcuis))
    assert cands[0].score == 10.0 and cands[0].name.lower() == "ibuprofen"
    assert c.approximate("zzzzzzzzzzzzzz") == []


def test_spelling_suggestions(server):
    c = client(server)
    assert "ibuprofen" in c.spelling_suggestions("ibuprofin")
    assert c.spelling_suggestions("qqqqqq") == []


def test_related_ingredients_and_brands(server):
    c = client(server)
    assert [(a.rxcui, a.name, a.tty) for a in c.ingredients("153010")] == [("5640", "ibuprofen", "IN")]
    assert [a.name for a in c.brands("161")] == ["Tylenol"]
    both = c.related("5640", ("IN", "BN"))
    assert both["IN"] == [] and [a.name for a in both["BN"]] == ["Advil"]
    assert "tty=IN+BN" in server.requests[-1][1]


def test_429_then_success_is_retried(server):
    c = client(server)
    server.fail_next(429, 429)
    assert c.rxcui("aspirin") == ["1191"]
    assert len(server.requests) == 3 and c.requests_sent == 3


def test_5xx_storm_ends_in_clear_error(server):
    c = client(server, max_attempts=4)
    server.fail_next(*[503] * 10)
    with pytest.raises(RxNavError, match=r"failed after 4 attempts: HTTP 503"):
        c.rxcui("aspirin")
    assert len(server.requests) == 4


def test_403_is_not_retried_and_explains(server):
    c = client(server)
    server.fail_next(403)
    with pytest.raises(RxNavError, match="403.*20 requests/second"):
        c.rxcui("aspirin")
    assert len(server.requests) == 1


def test_connection_refused_is_a_clear_error():
    c = RxNavClient(base_url="http://127.0.0.1:9/REST", max_attempts=2, backoff=0.01, max_backoff=0.01, timeout=1)
    with pytest.raises(RxNavError, match="failed after 2 attempts"):
        c.rxcui("aspirin")


def test_on_disk_cache_hit_makes_no_request(server, tmp_path):
    first = client(server, tmp_path)
    assert first.approximate("advil")[0].rxcui == "153010"
    first.close()
    n = len(server.requests)
    again = client(server, tmp_path)  # a new client (new process in real use), same cache file
    assert again.approximate("advil")[0].rxcui == "153010"
    assert len(server.requests) == n  # the server saw nothing
    assert again.requests_sent == 0
    again.close()


def test_errors_are_not_cached(server, tmp_path):
    c = client(server, tmp_path, max_attempts=2)
    server.fail_next(500, 500)
    with pytest.raises(RxNavError):
        c.rxcui("aspirin")
    assert c.rxcui("aspirin") == ["1191"]


def test_rate_limit_at_most_20_per_second(server):
    c = client(server, rate=20)
    t0 = time.monotonic()
    for _ in range(11):
        c.rxcui("aspirin")
    elapsed = time.monotonic() - t0
    times = [t for t, _ in server.requests]
    assert elapsed >= 0.5 - 0.01  # 11 requests need at least 10 intervals of 50 ms
    # no 1-second window (here: any 11 consecutive requests span >= 0.5 s) exceeds 20 requests
    assert times[-1] - times[0] >= 0.45


def test_rate_limiter_spaces_calls_across_threads():
    import threading

    lim = RateLimiter(50)
    stamps = []
    lock = threading.Lock()

    def work():
        for _ in range(5):
            lim.wait()
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stamps.sort()
    assert stamps[-1] - stamps[0] >= 19 * 0.02 - 0.01


def test_a_body_cut_off_mid_way_is_retried_and_a_null_body_is_an_error(server):
    c = client(server)
    server.fail_next("truncated")
    assert c.rxcui("ibuprofen") == ["5640"] and c.requests_sent == 2
    server.fail_next("null")
    with pytest.raises(RxNavError, match="not a JSON object"):
        c.rxcui("aspirin")


def test_one_cache_file_keeps_servers_apart(server, tmp_path):
    """Switching base_url (NLM vs a local RxNav-in-a-Box) must not replay the other server's answers."""
    first = client(server, tmp_path)
    assert first.rxcui("ibuprofen") == ["5640"]
    first.close()
    with FakeRxNav() as other:
        again = client(other, tmp_path)
        assert again.rxcui("ibuprofen") == ["5640"] and again.requests_sent == 1
        again.close()
