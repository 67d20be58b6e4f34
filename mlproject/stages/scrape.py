"""`mlproject scrape`: collect documents from the sources in params into one JSONL with provenance."""

from mlproject.config import Params


def run(params: Params, args) -> None:
    from mlproject.data.scrape import scrape

    p = params.paths
    report = scrape(params.scrape, p)
    urls = ", ".join(f"{n} {outcome}" for outcome, n in report["urls"].items())
    print(
        f"scrape: {report['documents']} documents, {report['characters']} characters from "
        f"{len(report['sources'])} source(s){f' (URLs: {urls})' if urls else ''}, "
        f"{len(report['duplicates'])} duplicates dropped -> {p.raw_documents}; report {p.scrape_report}"
    )
