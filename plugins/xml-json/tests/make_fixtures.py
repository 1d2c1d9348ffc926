#!/usr/bin/env python3
"""Writes the independent expectations for the xml-json plugin's corpus.

Run once, from anywhere, after `pip install xmltodict`; the outputs are
committed and the Rust tests (`tests/corpus.rs`) compare the plugin against
them. Rerun only when a fixture document changes.

For every `fixtures/NAME.xml` it writes `fixtures/NAME.xmltodict.json`:
xmltodict's default mapping (`@` attributes, `#text`, repeated elements as
lists, whitespace stripped), as `json.dumps(indent=2)`, which the plugin's
`pretty` output matches byte for byte, and `fixtures/NAME.xmltodict.xml`:
that JSON written back by `xmltodict.unparse` (compact, no declaration,
`<a/>` for null), for the JSON -> XML direction. `rss.xml` also gets
`rss.arrays.xmltodict.json` with `force_list` for the plugin's `arrays`.
"""

import json
import pathlib

import xmltodict

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"


def dump(value, path):
    text = json.dumps(value, indent=2, ensure_ascii=False) + "\n"
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path.name}")


def main():
    for source in sorted(FIXTURES.glob("*.xml")):
        if source.name.count(".") > 1:
            continue  # outputs such as NAME.out.xml
        document = source.read_bytes()
        parsed = xmltodict.parse(document)
        dump(parsed, FIXTURES / f"{source.stem}.xmltodict.json")
        xml = xmltodict.unparse(parsed, full_document=False, short_empty_elements=True)
        (FIXTURES / f"{source.stem}.xmltodict.xml").write_text(xml + "\n", encoding="utf-8")
        print(f"wrote {source.stem}.xmltodict.xml")
        if source.stem == "rss":
            forced = xmltodict.parse(document, force_list=("item", "category"))
            dump(forced, FIXTURES / "rss.arrays.xmltodict.json")


if __name__ == "__main__":
    main()
