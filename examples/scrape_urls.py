"""Scrape a list of URLs: fetch, parse and extract each page, all pages at once.

``with foreach("urls", name="pages", on_error="complete_all"):`` runs three
steps per URL (``ctx.item``): ``fetch`` gets the page from a fake web (no
network: its answers are scripted, so every run is the same), ``parse`` reads
the title and the links out of the HTML, ``extract`` keeps the links that stay
on the site. ``fetch`` is retried: the news page drops the connection, then
answers 503, then the page. A missing page raises ``LookupError``, which is
not in ``retry_on``: that item fails at once, and under ``complete_all`` the
others go on.

The block adds ``ctx["pages"]``: one ``Ok`` (what the item's steps added) or
``Err`` (why it failed) per URL, in URL order, whatever order the pages
arrived in. ``report`` turns it into one line per URL.

Run it: ``python examples/scrape_urls.py``
"""

from __future__ import annotations

import asyncio
from collections import Counter
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

from flowdsl import (
    Context,
    Err,
    Ok,
    Retry,
    Run,
    error,
    foreach,
    ok,
    run_workflow,
    step,
    workflow,
)

SITE = "https://example.com"
URLS = [f"{SITE}/", f"{SITE}/news", f"{SITE}/about", f"{SITE}/gone"]


class FakeWeb:
    """A scripted web: each page answers after a latency; some fail first, as `script` says."""

    def __init__(
        self,
        pages: dict[str, str],
        latency: dict[str, float],
        script: dict[str, tuple[str, ...]],
    ) -> None:
        self.pages = pages
        self.latency = latency
        self.script = script
        self.calls: Counter[str] = Counter()  # requests per idempotency key
        self.arrived: list[str] = []  # the URLs whose page was returned, in that order

    async def get(self, url: str, idempotency_key: str) -> tuple[int, str]:
        """Return ``(status, body)`` like an HTTP client would."""
        await asyncio.sleep(self.latency.get(url, 0.001))
        if url not in self.pages:
            return 404, "not found"
        seen = self.calls[idempotency_key]
        self.calls[idempotency_key] += 1
        behaviour = self.script.get(url, ())
        if seen < len(behaviour):
            if behaviour[seen] == "reset":
                raise ConnectionResetError("connection reset by peer")
            return 503, "service unavailable"
        self.arrived.append(url)
        return 200, self.pages[url]


WEB = FakeWeb(
    pages={
        f"{SITE}/": (
            "<html><head><title>Home</title></head><body>"
            '<a href="/news">News</a> <a href="/about">About</a>'
            ' <a href="https://elsewhere.org/">Partner</a></body></html>'
        ),
        f"{SITE}/news": (
            "<html><head><title>News</title></head><body>"
            '<a href="/news/1">First</a> <a href="/news/2">Second</a>'
            ' <a href="/news/1">First again</a></body></html>'
        ),
        f"{SITE}/about": (
            '<html><head><title>About us</title></head><body><a href="/">Home</a></body></html>'
        ),
    },
    latency={f"{SITE}/": 0.03, f"{SITE}/news": 0.002, f"{SITE}/about": 0.01},
    script={f"{SITE}/news": ("reset", "busy")},
)


class PageParser(HTMLParser):
    """Collects a page's title and the targets of its links."""

    def __init__(self) -> None:
        super().__init__()
        self.title = ""
        self.hrefs: list[str] = []
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.hrefs.append(href)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


@workflow
def scrape() -> None:
    with foreach("urls", name="pages", on_error="complete_all"):

        @step(
            retry=Retry(
                max_attempts=4, backoff="exponential", base=0.01, retry_on=(ConnectionError,)
            )
        )
        async def fetch(ctx: Context):
            status, body = await WEB.get(ctx.item, ctx.idempotency_key)
            if status == 404:
                raise LookupError(f"{ctx.item}: 404 {body}")  # not in retry_on: not retried
            if status != 200:
                return error(f"{ctx.item}: HTTP {status} {body}")  # a failed attempt, retried
            return ok({"html": body, "attempts": ctx.attempt})

        @step
        def parse(ctx: Context):
            parser = PageParser()
            parser.feed(ctx["html"])
            return ok({"title": parser.title, "hrefs": parser.hrefs})

        @step
        def extract(ctx: Context):
            host = urlsplit(ctx.item).netloc
            links = [urljoin(ctx.item, href) for href in ctx["hrefs"]]
            internal = [link for link in links if urlsplit(link).netloc == host]
            return ok({"links": list(dict.fromkeys(internal))})  # in page order, once each

    @step
    def report(ctx: Context):
        lines = []
        for url, page in zip(ctx["urls"], ctx["pages"], strict=True):
            match page:
                case Ok(found):
                    lines.append(
                        {
                            "url": url,
                            "title": found["title"],
                            "links": list(found["links"]),
                            "attempts": found["attempts"],
                        }
                    )
                case Err(reason):
                    lines.append({"url": url, "error": f"{type(reason).__name__}: {reason}"})
        return ok({"report": lines})


def show(run: Run) -> None:
    """Print a run: its status, each step attempt, and the report in URL order."""
    print(f"{run.workflow}: {run.status} in {run.duration * 1000:.0f} ms")
    for attempt in run.steps:
        note = f"  {attempt.error!r}" if attempt.error is not None else ""
        print(f"  {attempt.name:<11} attempt {attempt.attempt}  {attempt.status:<9}{note}")
    print(f"pages arrived in this order: {', '.join(WEB.arrived)}")
    print("report, in URL order:")
    for line in run.output["report"]:
        if "error" in line:
            print(f"  {line['url']:<26} failed: {line['error']}")
        else:
            tries = "" if line["attempts"] == 1 else f" (after {line['attempts']} attempts)"
            count = len(line["links"])
            links = f"{count} link" + ("" if count == 1 else "s")
            print(f"  {line['url']:<26} {line['title']!r}, {links}{tries}")


def main() -> None:
    show(run_workflow("scrape", {"urls": URLS}, run_id="scrape-1"))


if __name__ == "__main__":
    main()
