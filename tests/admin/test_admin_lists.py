"""Lists: ``size``/``offset``/``next`` paging and ``tags`` filters, with Kong's errors."""
from __future__ import annotations

import copy
import uuid

from admin_helpers import all_pages, create


async def _bulk_upstreams(gateway, count: int) -> set[str]:
    """``count`` upstreams written straight to the store in one transaction (the
    listing is under test here, not creation), copied from one made by the API."""
    template = await create(gateway, "/upstreams", {"name": "u000"})
    template.pop("targets")
    rows = []
    for i in range(1, count):
        row = copy.deepcopy(template)
        row.update(id=str(uuid.uuid4()), name=f"u{i:03d}", tags=["even" if i % 2 == 0 else "odd"])
        rows.append(("upstreams", row))
    gateway.worker.store.write(inserts=rows)
    return {"u000"} | {row["name"] for _, row in rows}


async def test_walk_250_items_in_pages(gateway):
    names = await _bulk_upstreams(gateway, 250)
    status, page = await gateway.admin("GET", "/upstreams")
    assert status == 200 and len(page["data"]) == 100  # default size
    pages, url, seen = [], "/upstreams?size=100", []
    while url:
        status, page = await gateway.admin("GET", url)
        assert status == 200, page
        pages.append(len(page["data"]))
        seen += [u["name"] for u in page["data"]]
        if page["next"]:
            assert page["next"].startswith("/upstreams?") and "size=100" in page["next"]
            assert page["offset"] and f"offset={page['offset']}" in page["next"]
        else:
            assert "offset" not in page
        url = page["next"]
    assert pages == [100, 100, 50]
    assert len(seen) == 250 and set(seen) == names  # every item exactly once
    status, page = await gateway.admin("GET", "/upstreams?size=1000")
    assert status == 200 and len(page["data"]) == 250 and page["next"] is None
    assert await all_pages(gateway, "/upstreams?size=7") == (await gateway.admin("GET", "/upstreams?size=1000"))[1]["data"]


async def test_nested_lists_page_too(gateway, encoding):
    await create(gateway, "/upstreams", {"name": "u"}, encoding)
    for i in range(5):
        await create(gateway, "/upstreams/u/targets", {"target": f"t{i}.example.com:80"}, encoding)
    status, page = await gateway.admin("GET", "/upstreams/u/targets?size=2")
    assert status == 200 and len(page["data"]) == 2 and page["next"].startswith("/upstreams/u/targets?")
    targets = await all_pages(gateway, "/upstreams/u/targets?size=2")
    assert sorted(t["target"] for t in targets) == [f"t{i}.example.com:80" for i in range(5)]


async def test_paging_errors(gateway):
    invalid_size = {"code": 9, "name": "invalid size", "message": "size must be an integer between 1 and 1000"}
    for size in ("0", "1001", "-5", "2.5"):
        assert await gateway.admin("GET", f"/upstreams?size={size}") == (400, invalid_size), size
    assert await gateway.admin("GET", "/services?size=lots") == (
        400, {"code": 9, "name": "invalid size", "message": "size must be a number"})
    assert await gateway.admin("GET", "/routes?offset=garbage") == (
        400, {"code": 7, "name": "invalid offset", "message": "'garbage' is not a valid offset: bad base64 encoding"})


async def test_tags_filters(gateway, encoding):
    for name, tags in [("a", ["red", "big"]), ("b", ["red", "small"]), ("c", ["blue", "big"]), ("d", None)]:
        await create(gateway, "/upstreams", {"name": name, "tags": tags}, encoding)
        await create(gateway, "/services", {"name": name, "host": "example.com", "tags": tags}, encoding)

    async def names(query: str, path: str = "/upstreams") -> set[str]:
        return {e["name"] for e in await all_pages(gateway, f"{path}?{query}")}

    assert await names("tags=red") == {"a", "b"}
    assert await names("tags=red,big") == {"a"}  # all of them
    assert await names("tags=red/big") == {"a", "b", "c"}  # any of them
    assert await names("tags=small/blue") == {"b", "c"}
    assert await names("tags=green") == set()
    assert await names("tags=red,big", "/services") == {"a"}
    assert await names("tags=small/blue", "/services") == {"b", "c"}
    # the filter is kept in the next link
    status, page = await gateway.admin("GET", "/upstreams?tags=big&size=1")
    assert status == 200 and len(page["data"]) == 1 and "tags=big" in page["next"]
    assert await names("tags=big&size=1") == {"a", "c"}
    invalid = {"code": 11, "name": "invalid options", "message": "invalid option (tags: invalid filter syntax)",
               "options": {"tags": "invalid filter syntax"}}
    assert await gateway.admin("GET", "/upstreams?tags=red,big/small") == (400, invalid)
    status, body = await gateway.admin("GET", "/upstreams?tags=a,b,c,d,e,f")
    assert status == 400 and body["message"] == "invalid option (tags: cannot query more than 5 tags)"


async def test_tag_values_are_checked(gateway, encoding):
    message = "invalid tag 'a,b': expected printable ascii (except `,` and `/`) or valid utf-8 sequences"
    status, body = await gateway.admin("POST", "/upstreams", {"name": "u", "tags": ["a,b"]}, encoding)
    assert status == 400 and body["fields"] == {"tags": message}, body
