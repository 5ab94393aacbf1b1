"""``septet serve``: the whole gateway wired from its config, run until SIGINT/SIGTERM.

Reads top to bottom in start-up order: :func:`serve` opens the store (and the writer process,
:func:`open_pipeline`), creates the dev account (:func:`_dev_account`), the inbound book and
the carriers (``gateway._serve_carriers``); :func:`_run_gateway` then starts the callback
sender, the pipeline (``gateway.app``), the HTTP API and the housekeeping tasks
(``gateway._serve_tasks``), announces the port, and on a signal drains the HTTP server before
the pipeline. The helpers after it turn config sections into the values those parts take.

On a fresh clone: LMDB under ./var/septet, the built-in SMSC simulator in-process as the
carrier, and a ``dev`` account created on first start. Its key is kept (mode 0600) in
``<store>/dev-key`` so that later starts print the same one; delete the account or set
``dev.create_account = false`` for anything but a laptop.

Part of the composition root (``gateway.cli`` calls it); must not be imported by actors or
adapters.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import fields
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from actors.callbacks_policy import RetryPolicy
from gateway import config as cfg
from gateway import inbound, retention  # their metrics register with the others
from gateway._gc import settle_after_start
from gateway._serve_carriers import ReceiptTap, build_carriers, carrier_id_types
from gateway._serve_tasks import prune_callback_marks, purge_idempotency, purge_inbound_parts
from gateway.accounts import Account, AccountBook, record_key_use
from gateway.optouts import OptOutList

if TYPE_CHECKING:
    from gateway.callback_outbox import CallbackOutbox

logger = logging.getLogger("septet")  # the name `septet serve` has always logged under


async def serve(config: cfg.Config, *, key_file: str | None = None,
                task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Run the whole gateway until SIGINT/SIGTERM (or cancellation); reports the HTTP port."""
    import gateway.importer  # noqa: F401  (campaign and import databases, issue 8)
    from gateway.api.inbound import received_reader
    from gateway.callback_outbox import CallbackOutbox  # registers its databases before open_store
    from gateway.callbacks import endpoint_resolver
    from gateway.store import open_store

    Path(config.store.path).mkdir(parents=True, exist_ok=True)
    map_size = config.store.map_size
    writer = config.store.resolved_writer
    if writer == "process":  # both processes must open the same map size
        from gateway._store_process import process_map_size

        map_size = process_map_size(map_size)
    async with open_store(config.store.path, sync=config.store.sync,
                          map_size=map_size) as store, \
            open_pipeline(writer, store, carrier_id_types(config)) as pipeline:
        # (the writer process, if any, starts now: its start overlaps the rest of ours)
        await AccountBook(store).start_tracking()  # key use: legacy keys' clock starts here
        key = await _dev_account(config, store)
        if key and key_file:
            Path(key_file).write_text(key + "\n")
        accounts = AccountBook(store)
        endpoint_for = endpoint_resolver(partial(_account_endpoints, accounts),
                                         version=lambda: accounts.version)
        # One instance: the inbound book writes, the notifier reads. Its enqueue and settle
        # run in the writer process when there is one (None: on the writer thread).
        outbox = CallbackOutbox(store, writes=pipeline)
        book = inbound.InboundBook(store, inbound.Router(inbound_routes(config)), outbox=outbox,
                                   endpoint_for=endpoint_for,
                                   keywords=config.optouts.keywords())  # STOP / START replies
        async with trio.open_nursery() as nursery:
            carriers = await build_carriers(config, nursery, book.sink)
            nursery.start_soon(purge_inbound_parts, store)
            await _run_gateway(config, store, carriers, key, task_status,
                               callbacks=(outbox, endpoint_for, received_reader(book)),
                               pipeline=pipeline,
                               inbound_store=partial(book.store, fail_fast=True))
            nursery.cancel_scope.cancel()  # the simulator


def _account_endpoints(book: AccountBook, name: str) -> tuple[str, str, str] | None:
    """(callback_url, callback_secret, inbound_url) of account ``name`` for the notifier."""
    acct = book.get(name)
    return None if acct is None else (acct.callback_url, acct.callback_secret, acct.inbound_url)


async def _run_gateway(config: cfg.Config, store: Any, carriers: list[Any], key: str | None,
                       task_status: trio.TaskStatus[int], *,
                       callbacks: tuple[CallbackOutbox, Any, Any], pipeline: Any = None,
                       inbound_store: Any = None) -> None:
    """``callbacks``: the callback outbox, the notifier's ``endpoint_for`` and the sender's
    ``received`` (shared with the inbound book, which pushes MO through the same outbox).
    ``pipeline``: the writer process's store view (``[store] writer = "process"``) or None.
    ``inbound_store``: ``InboundBook.store``, for HTTP providers' inbound webhooks."""
    from actors import notifier
    from gateway import metrics
    from gateway.api import create_api
    from gateway.api.inbound import InboundWebhooks
    from gateway.app import CoreSettings, open_gateway
    from gateway.callbacks import open_callback_sender
    from gateway.campaigns import Campaigns
    from gateway.http import HttpServer, ServerLimits

    h, a = config.http, config.api
    campaigns = Campaigns(store)  # its rules are a live view the rate limiter reads
    outbox, endpoint_for, received = callbacks
    policy = callback_policy(config.callbacks)
    async with open_callback_sender(allow_loopback=a.callbacks_allow_loopback,
                                    allow_private=a.callbacks_allow_private,
                                    batched=policy.batch_size > 1, received=received) as sender:
        run_notifier = partial(notifier.run, outbox=outbox, sender=sender,
                               policy=policy, endpoint_for=endpoint_for,
                               doorbell=outbox.doorbell)  # the inbound book rings it
        # [shaping] of the config (per account / connector) plus the live campaign rules; the
        # gateway sets the route from its route table (gateway.app.shaping_rules).
        settings = CoreSettings(shaping=cfg.shaping_rules(config, campaigns=campaigns.rules),
                                in_doubt=config.core.in_doubt,  # type: ignore[arg-type]
                                carrier_id_types=carrier_id_types(config))
        optouts = OptOutList(store, refresh=config.optouts.refresh_seconds)
        async with open_gateway(store, carriers, settings, notifier=run_notifier,
                                pipeline=pipeline, optouts=optouts) as gw:
            campaigns.bind(gw)
            taps = {c.name: c for c in carriers if isinstance(c, ReceiptTap)}

            async def receipt_sink(connector: str, receipts: list[Any]) -> None:
                tap = taps.get(connector)
                if tap is None or tap.sink is None:
                    raise LookupError(connector)
                await tap.sink(receipts)

            api = create_api(gw, a, allow_loopback_callbacks=a.callbacks_allow_loopback,
                             allow_private_callbacks=a.callbacks_allow_private,
                             receipt_parsers={n: t.parse for n, t in taps.items()},
                             receipt_tokens={n: t.token for n, t in taps.items()},
                             receipt_sink=receipt_sink, campaigns=campaigns)
            # the key uses the API's AccountBook notes are written by record_key_use, below
            api.inbound_webhooks = InboundWebhooks(
                parsers={n: t.parse_inbound for n, t in taps.items()},
                tokens={n: t.inbound_token for n, t in taps.items()},
                token_params={n: t.inbound_token_param for n, t in taps.items()},
                store=inbound_store)
            # ServerLimits' fields are a subset of [http]'s (test_server_limits_mirror_http_config)
            server = HttpServer(api, ServerLimits(
                **{f.name: getattr(h, f.name) for f in fields(ServerLimits)}))
            metrics.bind_server(server.statistics)
            async with trio.open_nursery() as nursery:
                port = await nursery.start(partial(server.serve, h.host, h.port, backlog=h.backlog,
                                                   reuse_port=h.reuse_port))
                nursery.start_soon(purge_idempotency, api.idempotency)
                nursery.start_soon(record_key_use, api.accounts)
                nursery.start_soon(prune_callback_marks, store)
                # [store] retention_days: hourly, first pass a few minutes after start
                nursery.start_soon(partial(retention.run_pruner, store,
                                           retention_days=config.store.retention_days))
                await nursery.start(campaigns.run)
                await _start_importer(config, campaigns, nursery)
                # Everything loaded so far lives as long as the process: keep the cyclic GC
                # from rescanning it, and from running every 700 allocations under load.
                settle_after_start()
                _announce(h.host, port, config.dev.account if config.dev.create_account else "",
                          key)
                task_status.started(port)
                await _until_signal()
                logger.info("shutting down: finishing requests in progress, then the pipeline")
                server.drain(grace=h.request_timeout)
                with trio.move_on_after(h.request_timeout + 1.0):
                    await server.stopped.wait()
                nursery.cancel_scope.cancel()


@asynccontextmanager
async def open_pipeline(writer: str, store: Any, id_types: Any) -> AsyncIterator[Any]:
    """The pipeline's store view for ``[store] writer``: None (the gateway builds its
    thread-writer view) or a :class:`gateway._store_process.ProcessPipelineStore`, whose
    writer process lives as long as the block (``CoreSettings``' receipt timeout)."""
    if writer != "process":
        yield None
        return
    from gateway._store_process import open_process_pipeline
    from gateway.app import CoreSettings

    async with open_process_pipeline(store, receipt_timeout=CoreSettings().receipt_timeout,
                                     id_types=id_types) as pipeline:
        yield pipeline


def callback_policy(c: cfg.CallbacksConfig) -> RetryPolicy:
    """The notifier's ``RetryPolicy`` from the ``[callbacks]`` section (docs/callbacks.md)."""
    return RetryPolicy(
        batch_size=c.batch_size, per_endpoint=c.max_in_flight_per_endpoint,
        max_in_flight=c.max_in_flight, max_age=c.retry_window_hours * 3600,
        initial_delay=c.initial_retry_delay, max_delay=c.max_retry_delay,
        request_timeout=c.request_timeout, breaker_failures=c.breaker_failures,
        breaker_cooldown=c.breaker_cooldown, breaker_max_cooldown=max(c.breaker_cooldown, 600.0),
        # enough read ahead to fill every request an endpoint may have in flight
        scan_limit=max(2000, c.batch_size * c.max_in_flight_per_endpoint))


async def _start_importer(config: cfg.Config, campaigns: Any, nursery: trio.Nursery) -> None:
    """The drop-folder watcher, when ``importer.drop_folder`` is set."""
    imp = config.importer
    if not imp.drop_folder:
        return
    from zoneinfo import ZoneInfo

    from gateway.importer import Importer, watch

    importer = Importer(campaigns, Path(imp.drop_folder), imp.account, imp.sender, imp.template,
                        imp.default_prefix, ZoneInfo(imp.timezone))
    await nursery.start(partial(watch, importer, poll=imp.poll_seconds))
    logger.info("importing mailing files dropped in %s", imp.drop_folder)


async def _until_signal() -> None:
    """Return at the first SIGINT or SIGTERM."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            return


def inbound_routes(config: cfg.Config) -> list[tuple[str, str]]:
    """(number, account) for inbound messages: ``[[inbound]]``, plus ``dev.inbound_number``
    for the dev account when it is created and no route names that number."""
    routes = [(r.number, r.account) for r in config.inbound]
    dev = config.dev
    taken = {inbound.digits(n) for n, _ in routes}
    if dev.create_account and dev.inbound_number and \
            inbound.digits(dev.inbound_number) not in taken:
        routes.append((dev.inbound_number, dev.account))
    return routes


async def _dev_account(config: cfg.Config, store: Any, *,
                       now: Callable[[], float] = time.time) -> str | None:
    """Create the dev account on first start; return its key (kept in <store>/dev-key).

    The key printed always works: when the kept one no longer does (unused for
    ``[api] key_inactivity_days``, or revoked), a new key of the dev account replaces it in
    the file (the old one stays stored, expired, like any other)."""
    if not config.dev.create_account:
        return None
    name = config.dev.account
    book = AccountBook(store, now=now, inactivity_days=config.api.key_inactivity_days)
    key_path = Path(config.store.path) / "dev-key"
    if book.get(name) is None:
        key = await book.create(Account(name))
        _write_key(key_path, key)
        return key
    if not key_path.exists():
        return None
    key = key_path.read_text().strip()
    if book.authenticate(key) is None:
        why = "expired (unused)" if book.expired(key) else "no longer valid"
        key = await book.add_key(name, label="dev")
        _write_key(key_path, key)
        logger.info("dev account %r: its key was %s; made a new one", name, why)
    return key


def _write_key(path: Path, key: str) -> None:
    """Write ``key`` to ``path``, readable by its owner only (mode 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")


def _announce(host: str, port: int, account: str, key: str | None) -> None:
    """Print where the gateway listens and, on a laptop, the dev key and a first curl."""
    print(f"septet: listening on http://{host}:{port}", flush=True)
    if key:
        print(f"septet: dev account {account!r} API key: {key}", flush=True)
        print(f"  curl -H \"Authorization: Bearer {key}\" "
              f"-d '{{\"to\":\"+351912345678\",\"from\":\"Septet\",\"text\":\"Olá\"}}' "
              f"{host}:{port}/v1/messages", flush=True)
    elif account:
        print("septet: no dev key to show (keys are stored hashed); make one with "
              f"`septet accounts key {account}` or `septet accounts create NAME`", flush=True)
