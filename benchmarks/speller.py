"""The speller behind <unk>: which order of character n-gram, and what paying for unknown words costs.

    python -m benchmarks.speller              # about 30 s; writes benchmarks/RESULTS-speller.json
    python -m benchmarks.run --render-only    # puts it in RESULTS.md (section 10)

On the default corpus (Debian's fortunes-es, scraped and validated with params.yaml's settings)
tokenized as the lyrics-words preset does (words, max_vocab 8000, min_count 2). The order is chosen
on rare words held out of the training split (documents whose hash falls in [0.1, 0.2)), never on
the validation text; the validation figures show what the chosen speller adds to a word model's
bits per byte, beside the character unigram of the training text that the issue measured first.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORDERS = range(1, 8)
LEVEL, MAX_VOCAB, MIN_COUNT = "word", 8000, 2  # presets/lyrics-words.yaml


def documents(params_path: Path) -> list[dict]:
    from mlproject.config import load_params
    from mlproject.data.scrape import scrape
    from mlproject.data.validate import validate
    from mlproject.fileio import read_jsonl

    params = load_params(params_path)
    with tempfile.TemporaryDirectory() as folder:
        paths = params.paths.under(Path(folder))
        scrape(params.scrape, paths)
        validate(params.validate, paths)
        return read_jsonl(paths.accepted_documents)


def joined(docs: list[dict]) -> str:
    return "\n\n".join(d["text"] for d in docs)


def unknown_pieces(text: str, kept: set[str]) -> list[str]:
    from mlproject.data.tokens import UNKNOWN, Vocabulary

    return [p for p in Vocabulary(LEVEL, (UNKNOWN,)).split(text) if p not in kept]


def utf8(pieces: list[str]) -> int:
    return sum(len(p.encode("utf-8")) for p in pieces)


def measure(docs: list[dict]) -> dict:
    from mlproject.data.speller import ORDER, Speller
    from mlproject.data.tokens import build_vocabulary, split_by_document

    training, validation = split_by_document(docs, 0.1)
    fitted, held_out = split_by_document(training, 0.2)  # within training only: [0.1, 0.2) held out
    kept = set(build_vocabulary(joined(fitted), LEVEL, MAX_VOCAB, MIN_COUNT).tokens)
    rare, held = unknown_pieces(joined(fitted), kept), unknown_pieces(joined(held_out), kept)
    orders = []
    for order in ORDERS:
        speller = Speller.fit(rare, whole_token=True, order=order)
        nats = sum(speller.nats(p) for p in held)
        orders.append(
            {
                "order": order,
                "bits_per_unknown_byte": nats / math.log(2) / utf8(held),
                "saved_kb": len(json.dumps(speller.to_dict(), ensure_ascii=False)) / 1000,
            }
        )
    vocabulary = build_vocabulary(joined(training), LEVEL, MAX_VOCAB, MIN_COUNT)
    text = joined(validation)
    unknown = unknown_pieces(text, set(vocabulary.tokens))
    size = len(text.encode("utf-8"))
    letters = Counter(joined(training))
    unigram_bits = sum(-math.log2(letters.get(c, 0.5) / letters.total()) for p in unknown for c in p)
    return {
        "date": datetime.now(timezone.utc).date().isoformat(),
        "order_chosen": ORDER,
        "held_out_unknown_tokens": len(held),
        "held_out_unknown_bytes": utf8(held),
        "orders": orders,
        "validation_tokens": len(vocabulary.split(text)),
        "validation_unknown_tokens": len(unknown),
        "validation_bytes": size,
        "validation_unknown_bytes": utf8(unknown),
        "speller_adds_bits_per_byte": sum(vocabulary.speller.nats(p) for p in unknown) / math.log(2) / size,
        "unigram_adds_bits_per_byte": unigram_bits / size,
    }


def lines(figures: dict | None) -> list[str]:
    """Section 10 of RESULTS.md (run.py renders it when RESULTS-speller.json exists)."""
    if not figures:
        return []
    best = min(figures["orders"], key=lambda row: row["bits_per_unknown_byte"])
    out = [
        "## 10. The speller behind <unk>",
        "",
        f"Measured {figures['date']} by `python -m benchmarks.speller` on the default corpus tokenized as "
        f"`lyrics-words` ({LEVEL}s, max_vocab {MAX_VOCAB}, min_count {MIN_COUNT}). A character n-gram "
        "with an end-of-word mark, interpolated (Witten-Bell) down to a byte-level base, fitted on the "
        "training split's tokens left out of the vocabulary. Order chosen on "
        f"{figures['held_out_unknown_tokens']:,} unknown tokens ({figures['held_out_unknown_bytes']:,} "
        "bytes) of documents held out of the training split, never on the validation text:",
        "",
        "| order (characters of context + 1) | bits per unknown byte, held out | saved size (kB) |",
        "|---|---|---|",
    ]
    for row in figures["orders"]:
        mark = " (chosen)" if row["order"] == figures["order_chosen"] else ""
        out.append(f"| {row['order']}{mark} | {row['bits_per_unknown_byte']:.3f} | {row['saved_kb']:.0f} |")
    chosen = next(r for r in figures["orders"] if r["order"] == figures["order_chosen"])
    out += [
        "",
        f"Order {figures['order_chosen']}: within "
        f"{chosen['bits_per_unknown_byte'] / best['bits_per_unknown_byte'] - 1:.1%} "
        f"of the best (order {best['order']}) at about half its size. On the validation text, "
        f"{figures['validation_unknown_tokens']:,} of {figures['validation_tokens']:,} tokens are unknown, "
        f"{figures['validation_unknown_bytes']:,} of {figures['validation_bytes']:,} bytes; spelling them adds "
        f"**{figures['speller_adds_bits_per_byte']:.4f} bits per byte** to a word model's figure "
        f"(a character unigram of the training text would add {figures['unigram_adds_bits_per_byte']:.4f}). "
        "Before the speller, those bytes cost one P(<unk>) a word.",
        "",
    ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--params", default=str(ROOT / "params.yaml"), help="whose scrape and validate sections give the corpus"
    )
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "RESULTS-speller.json"))
    args = parser.parse_args()
    started = time.perf_counter()
    figures = measure(documents(Path(args.params)))
    from mlproject.fileio import write_json

    write_json(args.out, figures)
    print("\n".join(lines(figures)))
    print(f"wrote {args.out} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
