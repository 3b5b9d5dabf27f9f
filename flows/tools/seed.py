"""Demo tables `tags`, `products` and `product_tags` (each product's tags), filled with
realistic and hostile values."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from flows.control.database import pg_connect

# Values that break naive CSV/Excel writers: separators, quotes, line breaks, formula
# triggers, unicode, emoji. Each is cycled through the generated rows.
HOSTILE_TEXT = [
    "plain",
    "comma, inside",
    'quote " inside',
    "line\nbreak",
    "carriage\rreturn",
    "crlf\r\nrow",
    "\ttab first",
    "=SUM(A1:A9)",
    "+cmd|' /C calc'!A0",
    "-2+3",
    "@import",
    '=HYPERLINK("http://x","y")',
    "naïve café ÆØÅ",
    "日本語のテキスト",
    "emoji 🎉🚀",
    "",
    "  padded  ",
    "semi;colon",
    "http://example.com/not-a-link",
    "back\\slash",
]

_SCHEMA = """
DROP TABLE IF EXISTS tags, products, product_tags;
CREATE TABLE tags (
    id            integer NOT NULL,
    name          text NOT NULL,
    slug          text NOT NULL,
    color         text,
    description   text,
    usage_count   integer,
    created_at    timestamptz,
    internal_note text
);
CREATE TABLE products (
    id            bigint NOT NULL,
    sku           text NOT NULL,
    name          text NOT NULL,
    description   text,
    price         numeric(12, 2),
    external_id   uuid,
    attributes    jsonb,
    in_stock      boolean,
    released_on   date,
    created_at    timestamptz,
    barcode       bigint,
    weight_kg     double precision,
    cost_price    numeric(12, 2),
    supplier_email text
);
CREATE TABLE product_tags (
    product_id    bigint NOT NULL,
    tag_id        integer NOT NULL,
    added_at      timestamptz,
    note          text,
    added_by      text
);
"""

# Every product but each fourth has one to three tags (fewer when there are few tags).
_PRODUCT_TAGS = """
INSERT INTO product_tags
SELECT DISTINCT ON (p.id, t.tag_id) p.id, t.tag_id,
       timestamptz '2024-02-01 00:00:00+00' + (p.id * 3 + t.k) * interval '1 minute',
       (%(hostile)s::text[])[1 + (p.id + t.k) %% %(n)s],
       'editor' || t.k || '@example.com'
FROM products p
CROSS JOIN LATERAL (
    SELECT k, 1 + ((p.id * 7 + k * 13) %% %(tags)s)::int AS tag_id
    FROM generate_series(0, (p.id %% 4)::int - 1) AS k
) t
WHERE %(tags)s > 0
ORDER BY p.id, t.tag_id, t.k
"""

_TAGS = """
INSERT INTO tags
SELECT i,
       'tag ' || i || ' ' || (%(hostile)s::text[])[1 + i %% %(n)s],
       'tag-' || i,
       CASE WHEN i %% 5 = 0 THEN NULL
            ELSE '#' || lpad(to_hex(i * 2654435761 %% 16777216), 6, '0') END,
       (%(hostile)s::text[])[1 + (i * 7) %% %(n)s],
       CASE WHEN i %% 11 = 0 THEN NULL ELSE (i * 37) %% 10000 END,
       CASE WHEN i = 3 THEN 'infinity'::timestamptz
            ELSE timestamptz '2024-01-01 00:00:00+00' + i * interval '61.123 seconds' END,
       'internal ' || i
FROM generate_series(1::bigint, %(rows)s) AS i
"""

_PRODUCTS = """
INSERT INTO products
SELECT i,
       lpad((i %% 100000)::text, 8, '0'),
       (%(hostile)s::text[])[1 + i %% %(n)s] || ' #' || i,
       CASE WHEN i %% 9 = 0 THEN NULL ELSE (%(hostile)s::text[])[1 + (i * 3) %% %(n)s] END,
       CASE WHEN i %% 13 = 0 THEN NULL ELSE ((i * 7919) %% 1000000) / 100.0 END,
       ('5eed0000-0000-4000-8000-'
        || lpad(to_hex(i * 2654435761 %% 281474976710656), 12, '0'))::uuid,
       ('{"color": "' || (ARRAY['red', 'green', 'blue'])[1 + i %% 3] || '", "size": ' || i %% 50
        || ', "note": ' || (%(hostile_json)s::text[])[1 + i %% %(n)s] || '}')::jsonb,
       CASE WHEN i %% 17 = 0 THEN NULL ELSE i %% 2 = 0 END,
       date '2020-01-01' + (i %% 2000)::int,
       timestamptz '2024-01-01 00:00:00+00' + i * interval '7.250 seconds',
       CASE WHEN i %% 4 = 0 THEN 9007199254740993 + i ELSE 1000000000000000000 + i END,
       CASE WHEN i %% 19 = 0 THEN NULL ELSE (i %% 5000) / 7.0 END,
       ((i * 31) %% 100000) / 100.0,
       'supplier' || i || '@example.com'
FROM generate_series(%(first)s::bigint, %(last)s) AS i
"""


def _insert_products(url: str, params: dict) -> None:
    with pg_connect(url) as conn:
        conn.execute(_PRODUCTS, params)


def seed(url: str, rows: int = 1000, tag_rows: int | None = None) -> dict[str, int]:
    """(Re)create the demo tables with `rows` products and `tag_rows` tags."""
    tag_rows = min(rows, 1000) if tag_rows is None else tag_rows
    params = {
        "hostile": HOSTILE_TEXT,
        "hostile_json": [json.dumps(t) for t in HOSTILE_TEXT],
        "n": len(HOSTILE_TEXT),
    }
    with pg_connect(url) as conn:
        conn.execute(_SCHEMA)
        conn.execute(_TAGS, {**params, "rows": tag_rows})
    # Two halves on two connections: the insert is CPU-bound in the server.
    half = rows // 2
    with ThreadPoolExecutor(2) as pool:
        for f in [
            pool.submit(_insert_products, url, {**params, "first": 1, "last": half}),
            pool.submit(_insert_products, url, {**params, "first": half + 1, "last": rows}),
        ]:
            f.result()
    with pg_connect(url) as conn:
        conn.execute(_PRODUCT_TAGS, {**params, "tags": tag_rows})
    with pg_connect(url, autocommit=True) as conn:
        # Keys after the bulk insert: building an index once is cheaper than maintaining it.
        conn.execute("ALTER TABLE tags ADD PRIMARY KEY (id)")
        conn.execute("ALTER TABLE products ADD PRIMARY KEY (id)")
        conn.execute("ALTER TABLE product_tags ADD PRIMARY KEY (product_id, tag_id)")
        conn.execute("ANALYZE tags")
        conn.execute("ANALYZE product_tags")
        conn.execute("ANALYZE products")
        links = conn.execute("SELECT count(*) FROM product_tags").fetchone()[0]
    return {"tags": tag_rows, "products": rows, "product_tags": links}
