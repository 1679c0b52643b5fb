"""`akson registry sync`: keep the person register current from its event feed."""

from __future__ import annotations

import asyncio
import logging
import sys
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

import click
from tqdm import tqdm

from akson.config import Settings
from akson.registry.feed import FeedError, FileFeed, HttpFeed, PersonFeed
from akson.registry.sync import SyncResult
from akson.registry.sync import sync as run_sync

if TYPE_CHECKING:
    from akson.store.repository import ResourceStore

log = logging.getLogger("akson.registry.sync")


@click.command("sync")
@click.option("--file", "path", type=click.Path(exists=True, dir_okay=False),
              help="A JSON Lines file of events (docs/registers.md, Event feed).")
@click.option("--url", help="Base URL of a Persontjenesten-style event API (GET {url}/api/event).")
@click.option("--token", envvar="AKSON_PERSONTJENESTEN_TOKEN", show_envvar=True,
              help="Bearer token for --url; prefer the environment variable (argv is visible).")
@click.option("--once", is_flag=True, help="Stop when the feed has nothing newer (else keep polling).")
@click.option("--interval", default=60.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds between polls without --once.")
@click.option("--batch", default=100, show_default=True, type=click.IntRange(min=1),
              help="Events fetched per request.")
@click.option("--feed-name", default="freg", show_default=True,
              help="Name the position is recorded under (one per feed consumed).")
@click.option("--progress/--no-progress", default=True, show_default=True)
def sync(path: str | None, url: str | None, token: str | None, once: bool, interval: float,
         batch: int, feed_name: str, progress: bool) -> None:
    """Apply person-register events after the recorded position, each in its own transaction.

    Safe to stop or kill at any time: a restart continues after the last applied event. Events
    that cannot be applied are recorded with their reason and skipped.
    """
    if (path is None) == (url is None):
        raise click.UsageError("give exactly one of --file and --url")
    settings = Settings.from_env()
    from akson.store.migrate import upgrade

    upgrade(settings.database_url)
    try:
        total = asyncio.run(_main(settings, path, url, token, once=once, interval=interval,
                                  batch=batch, feed_name=feed_name, progress=progress))
    except FeedError as exc:
        click.echo(f"The feed failed: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("Stopped; the next run continues after the last applied event.", err=True)
        sys.exit(130)
    click.echo(total.render())


async def _main(settings: Settings, path: str | None, url: str | None, token: str | None, *,
                once: bool, interval: float, batch: int, feed_name: str,
                progress: bool) -> SyncResult:
    from akson.fhir.searchparams import SearchParamRegistry
    from akson.store import sync_state
    from akson.store.database import connect
    from akson.store.repository import ResourceStore

    db = connect(settings.database_url, pool_size=2)
    await db.open()
    total = SyncResult()
    async with AsyncExitStack() as stack:
        stack.push_async_callback(db.close)
        feed: PersonFeed
        if url is not None:
            feed = await stack.enter_async_context(HttpFeed(url, token))
        else:
            assert path is not None
            feed = FileFeed(path)
        store = ResourceStore(db, SearchParamRegistry.default())
        while True:
            try:
                result = await _once(store, feed, settings, batch, feed_name, progress)
            except FeedError as exc:
                if once:
                    raise
                log.warning("feed %s failed (%s), retrying in %.0f s", feed_name,
                            type(exc).__name__, interval)
            else:
                total.applied += result.applied
                total.rejected += result.rejected
                total.skipped += result.skipped
                total.position = result.position
                if once:
                    break
            await asyncio.sleep(interval)  # polling a live feed: wait for new events
        if total.rejected:
            async with store.session(write=False) as s:
                shown = await sync_state.rejections(s.tx, feed_name, min(total.rejected, 20))
            for rejection in shown:
                at = "no sequence" if rejection.sequence is None else f"sequence {rejection.sequence}"
                click.echo(f"  rejected ({at}): {rejection.reason}")
    return total


async def _once(store: ResourceStore, feed: PersonFeed, settings: Settings, batch: int,
                feed_name: str, progress: bool) -> SyncResult:
    """One pass to the end of the feed, with a progress bar over the sequences still to go."""
    from akson.store import sync_state

    latest = await feed.latest() if progress else None
    async with store.session(write=False) as s:
        start = await sync_state.position(s.tx, feed_name)
    bar = tqdm(total=max((latest or start) - start, 0) or None, unit="event", desc=feed_name,
               disable=not progress)
    try:
        return await run_sync(
            store, feed, feed_name=feed_name, allow_synthetic_ids=settings.allow_synthetic_ids,
            batch=batch, on_event=lambda r: bar.update(r.position - start - bar.n),
        )
    finally:
        bar.close()


if __name__ == "__main__":  # `python -m akson.registry_sync_cli` until the lead wires it in
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sync()
