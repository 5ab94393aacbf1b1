"""The ``septet`` command: serve the gateway, run the simulator, manage accounts, run benches.

    septet serve [--config septet.toml]       the gateway on its embedded defaults (make serve)
    septet simulator [options]                the SMSC simulator alone (adapters.simulator)
    septet accounts create NAME [--prefix 351] [--encoding ...] [--max-parts N]
                                [--callback-url URL] [--callback-secret S]   prints a new API key
    septet accounts list | show NAME | key NAME | revoke KEY|KEY_ID | set NAME [options]
                                              (show lists the keys: id, last use, expired)
    septet config [--config septet.toml]      print the resolved configuration (or every error)
    septet bench NAME|all                     python -m bench.NAME (bench/*.py)
    septet import FILE [--config septet.toml] import one mailing file (docs/campaigns.md)
    septet export ACCOUNT [--campaign C] [--status S] [--since T] [--until T] [--to N] [-o FILE]
                                              an account's message history as CSV

``serve`` on a fresh clone: LMDB under ./var/septet, the built-in SMSC simulator in-process as
the carrier, and a ``dev`` account created on first start. Its key is kept (mode 0600) in
``<store>/dev-key`` so that later starts print the same one; delete the account or set
``dev.create_account = false`` for anything but a laptop.

This module is the composition root's entry point: the only place reading ``sys.argv``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, fields
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import trio

from actors.callbacks_policy import RetryPolicy
from gateway import config as cfg
from gateway import inbound, logs, retention  # their metrics register with the others
from gateway._gc import settle_after_start
from gateway.accounts import Account, AccountBook, KeyInfo, record_key_use
from gateway.errors import AccountError, ConfigError
from gateway.optouts import OptOutList

if TYPE_CHECKING:
    from gateway.callback_outbox import CallbackOutbox

logger = logging.getLogger("septet")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``septet``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["simulator"]:  # its own options, --help included, go to it untouched
        from adapters.simulator import main as simulator_main

        return int(simulator_main(argv[1:]))
    if argv[:1] == ["bench"] and len(argv) > 1:
        return _bench(argv[1], argv[2:])
    args = _parser().parse_args(argv)
    try:
        config = cfg.load(args.config)
    except ConfigError as exc:
        print(f"septet: {exc}", file=sys.stderr)
        return 2
    if args.command == "config":
        print(json.dumps(asdict(config), indent=2))
        return 0
    if args.command == "import":
        return trio.run(_import_file, config, args.file)
    if args.command == "export":
        return trio.run(_export, config, args)
    if args.command == "serve":
        logs.configure(config.log_level, config.log_format)
        failed = False
        try:
            trio.run(partial(serve, config, key_file=args.print_key_file))
        except* OSError as group:  # e.g. the port is taken: say so without a traceback
            failed = True
            for leaf in _leaves(group):
                print(f"septet: cannot serve on {config.http.host}:{config.http.port}: {leaf}",
                      file=sys.stderr)
        return 1 if failed else 0
    status = 1
    try:
        status = trio.run(_accounts, config, args)
    except* AccountError as group:  # raised inside the store's nursery
        for leaf in _leaves(group):
            print(f"septet: {leaf}", file=sys.stderr)
    return status


def _leaves(group: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups."""
    if isinstance(group, BaseExceptionGroup):
        return [leaf for exc in group.exceptions for leaf in _leaves(exc)]
    return [group]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="septet", description="Septet SMS gateway")
    p.add_argument("--config", help="TOML configuration file")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the gateway")
    s.add_argument("--config", help="TOML configuration file", default=argparse.SUPPRESS)
    s.add_argument("--print-key-file", help="also write the dev account's key to this file")
    sim = sub.add_parser("simulator", help="run the SMSC simulator", add_help=False)
    sim.add_argument("rest", nargs=argparse.REMAINDER)
    c = sub.add_parser("config", help="print the resolved configuration")
    c.add_argument("--config", help="TOML configuration file", default=argparse.SUPPRESS)
    imp = sub.add_parser("import", help="import one mailing file into a campaign")
    imp.add_argument("--config", help="TOML configuration file", default=argparse.SUPPRESS)
    imp.add_argument("file")
    e = sub.add_parser(
        "export", help="write an account's message history as CSV",
        description="Write an account's messages, with their state, parts' carrier ids and text, "
                    "as CSV (the columns of GET /v1/messages with Accept: text/csv). Reads only: "
                    "it can run beside a serving gateway on the same store.")
    e.add_argument("--config", help="TOML configuration file", default=argparse.SUPPRESS)
    e.add_argument("account", help="the account whose messages to export")
    e.add_argument("--campaign", help="only this campaign (e.g. API_SMS_2026_11)")
    e.add_argument("--status", help="only these states, comma-separated (e.g. NOT_DELIVERED,NOT_SENT)")
    e.add_argument("--since", help="accepted at or after: RFC 3339 with offset, or Unix seconds")
    e.add_argument("--until", help="accepted before: RFC 3339 with offset, or Unix seconds")
    e.add_argument("--to", help="only this recipient (normalised like a submitted number)")
    e.add_argument("--text", help="only texts containing this (case-insensitive)")
    e.add_argument("-o", "--output", help="file to write (default: standard output)")
    b = sub.add_parser("bench", help="run a benchmark: " + ", ".join(BENCHES) + " or all")
    b.add_argument("name")
    b.add_argument("rest", nargs=argparse.REMAINDER)
    a = sub.add_parser("accounts", help="manage accounts and API keys")
    a.add_argument("--config", help="TOML configuration file", default=argparse.SUPPRESS)
    asub = a.add_subparsers(dest="action", required=True)
    for name in ("create", "set"):
        x = asub.add_parser(name)
        x.add_argument("name")
        x.add_argument("--prefix", help="default country calling code, e.g. 351")
        x.add_argument("--encoding", choices=cfg.POLICIES)
        x.add_argument("--max-parts", type=int)
        x.add_argument("--callback-url")
        x.add_argument("--callback-secret")
        x.add_argument("--inbound-url", help="where inbound (MO) messages are pushed "
                       "(default: the callback URL); \"\" clears it")
    asub.add_parser("list")
    asub.add_parser("show").add_argument("name")
    asub.add_parser("key").add_argument("name")
    asub.add_parser("revoke").add_argument(
        "key", help="the key (sk_...), or its id as `septet accounts show NAME` lists it")
    return p


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    pairs = {"default_prefix": args.prefix, "policy": args.encoding, "max_parts": args.max_parts,
             "callback_url": args.callback_url, "callback_secret": args.callback_secret,
             "inbound_url": args.inbound_url}
    return {k: v for k, v in pairs.items() if v is not None}


async def _accounts(config: cfg.Config, args: argparse.Namespace) -> int:
    from gateway.store import open_store

    Path(config.store.path).mkdir(parents=True, exist_ok=True)
    async with open_store(config.store.path, sync=config.store.sync,
                          map_size=config.store.map_size) as store:
        book = AccountBook(store, inactivity_days=config.api.key_inactivity_days)
        if args.action == "create":
            key = await book.create(Account(args.name, **_settings(args)))
            print(key)
        elif args.action == "set":
            print(_describe(await book.update(args.name, **_settings(args))))
        elif args.action == "list":
            for name in book.names():
                print(name)
        elif args.action == "show":
            account = book.get(args.name)
            if account is None:
                raise AccountError(f"no account named {args.name!r}")
            print(_describe(account, book.keys(account.name)))
        elif args.action == "key":
            print(await book.add_key(args.name))
        elif args.action == "revoke":  # a key, or a key's id as `show` lists it
            revoke = book.revoke_key if args.key.startswith("sk_") else book.revoke_key_id
            if not await revoke(args.key):
                raise AccountError("no such key")
            print("revoked")
    return 0


def _describe(account: Account, keys: Sequence[KeyInfo] | None = None) -> str:
    """An account as one JSON line; with ``keys``, its API keys (id, label, created,
    last used, expired; times as RFC 3339 UTC)."""
    doc: dict[str, Any] = asdict(account)
    doc["callback_secret"] = "(set)" if account.callback_secret else ""
    if keys is not None:
        doc["keys"] = [{"id": k.key_id, "label": k.label, "created_at": _utc(k.created_at),
                        "last_used": _utc(k.last_used), "expired": k.expired} for k in keys]
    return json.dumps(doc)


def _utc(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def carrier_id_types(config: cfg.Config) -> dict[str, str]:
    """Each SMPP connector's message-id format, for correlating receipts. The built-in simulator
    writes decimal ids (adapters.simulator's default), so it is never guessed."""
    types = {c.name: c.id_type for c in config.smpp}
    if config.simulator.enabled:
        types["simulator"] = "decimal"
    return types


BENCHES = ("codec", "pipeline", "ingress", "smpp", "shaping", "callbacks", "receipts", "e2e",
           "campaign")
"""What ``septet bench all`` runs, in order (bench/loadgen.py and bench/chart.py are tools)."""


def _bench(name: str, rest: list[str]) -> int:
    root = Path(__file__).resolve().parent.parent / "bench"
    if name != "all" and name not in BENCHES:
        print(f"septet: no benchmark {name!r}; one of: all, {', '.join(BENCHES)}",
              file=sys.stderr)
        return 2
    names = [n for n in BENCHES if (root / f"{n}.py").exists()] if name == "all" else [name]
    status = 0
    for n in names:
        print(f"== bench.{n}", flush=True)
        status |= subprocess.call([sys.executable, "-m", f"bench.{n}", *rest])
    return status


async def _import_file(config: cfg.Config, file: str) -> int:
    """``septet import FILE``: stage one mailing file (processed/ or discarded/ beside it);
    the running gateway's campaign runner expands it."""
    from zoneinfo import ZoneInfo

    from gateway.campaigns import Campaigns
    from gateway.importer import Importer
    from gateway.store import open_store

    imp = config.importer
    Path(config.store.path).mkdir(parents=True, exist_ok=True)
    async with open_store(config.store.path, sync=config.store.sync,
                          map_size=config.store.map_size) as store:
        importer = Importer(Campaigns(store), Path(file).resolve().parent, imp.account,
                            imp.sender, imp.template, imp.default_prefix, ZoneInfo(imp.timezone))
        where = await importer.process(Path(file))
    print(f"septet: {Path(file).name} {where}")
    return 0 if where == "processed" else 1


async def _export(config: cfg.Config, args: argparse.Namespace) -> int:
    """``septet export``: the filters are parsed by the API's own query parser, so the command
    and ``GET /v1/messages`` accept and refuse the same values."""
    from urllib.parse import urlencode

    from gateway.api.problems import Problem
    from gateway.api.query import parse_search
    from gateway.export import csv_chunks
    from gateway.store import open_store
    from gateway.validation import NumberNormaliser

    filters = {"campaign": args.campaign, "status": args.status, "since": args.since,
               "until": args.until, "to": args.to, "q": args.text}
    if not Path(config.store.path).is_dir():
        print(f"septet: no store at {config.store.path}", file=sys.stderr)
        return 2
    async with open_store(config.store.path, sync=config.store.sync,
                          map_size=config.store.map_size) as store:
        account = AccountBook(store).get(args.account)
        if account is None:
            print(f"septet: no account named {args.account!r}", file=sys.stderr)
            return 2
        query = urlencode({k: v for k, v in filters.items() if v is not None})
        try:
            q = parse_search(query, account, NumberNormaliser(1000), 1, 1)
        except Problem as exc:
            for error in exc.errors:
                name = error.field.removeprefix("query:")
                name = "text" if name == "q" else name
                print(f"septet: --{name}: {error.reason}", file=sys.stderr)
            return 2
        # A command-line run: nothing else shares this event loop, blocking writes are fine.
        out = open(args.output, "wb") if args.output else sys.stdout.buffer  # noqa: ASYNC230, SIM115
        try:
            for chunk in csv_chunks(store, account.name, q):
                out.write(chunk)
        finally:
            if args.output:
                out.close()
            else:
                out.flush()
    return 0


# ---------------------------------------------------------------------------------------------
# serve


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
            carriers = await _carriers(config, nursery, book.sink)
            nursery.start_soon(_purge_inbound_parts, store)
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
                tokens={n: t.inbound_token for n, t in taps.items()}, store=inbound_store)
            # ServerLimits' fields are a subset of [http]'s (test_server_limits_mirror_http_config)
            server = HttpServer(api, ServerLimits(
                **{f.name: getattr(h, f.name) for f in fields(ServerLimits)}))
            metrics.bind_server(server.statistics)
            async with trio.open_nursery() as nursery:
                port = await nursery.start(partial(server.serve, h.host, h.port, backlog=h.backlog,
                                                   reuse_port=h.reuse_port))
                nursery.start_soon(_purge_idempotency, api.idempotency)
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
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            return


CALLBACK_MARKS_KEPT: Final = 7 * 86_400.0
"""Seconds the callback outbox remembers which statuses of a message it settled (``cb_done``):
beyond the receipt timeout (48 h) and the correlator's replays, so no duplicate can follow."""


async def prune_callback_marks(store: Any, *, every: float = 3600.0,
                               keep: float = CALLBACK_MARKS_KEPT,
                               now: Callable[[], float] = time.time) -> None:
    """Every ``every`` seconds, forget the delivered-callback marks of messages accepted more
    than ``keep`` seconds ago (``gateway.callback_outbox.prune_done``; ids are time-ordered),
    so that table does not grow forever."""
    from actors.ingress import id_floor
    from gateway.callback_outbox import prune_done

    while True:
        await trio.sleep(every)
        removed = await prune_done(store, before_msg_id=id_floor(now() - keep))
        if removed:
            logger.info("callbacks: %d settled-status marks older than %.0f days removed",
                        removed, keep / 86_400)


async def _purge_idempotency(book: Any) -> None:
    while True:
        await trio.sleep(3600)
        removed = await book.purge()
        logger.info("idempotency: %d expired keys removed", removed)


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


async def _purge_inbound_parts(store: Any, *, every: float = 3600.0) -> None:
    """Every hour, drop parts of inbound messages still incomplete after ``PART_TTL``, and
    providers' message ids older than ``SEEN_TTL`` (in ops of at most 10,000)."""
    while True:
        await trio.sleep(every)
        removed = await inbound.purge_parts(store, older_than=time.time() - inbound.PART_TTL)
        if removed:
            logger.info("inbound: %d parts of incomplete messages removed", removed)
        forgotten, batch = 0, 10_000  # one op's most: the writer commits others in between
        while batch == 10_000:
            batch = await inbound.purge_seen(store, older_than=time.time() - inbound.SEEN_TTL,
                                             limit=batch)
            forgotten += batch
        if forgotten:
            logger.info("inbound: %d providers' message ids forgotten", forgotten)


async def _carriers(config: cfg.Config, nursery: trio.Nursery,
                    inbound_sink: Any = None) -> list[Any]:
    from adapters.smpp.client import SmppCarrier

    carriers: list[Any] = []
    sim = config.simulator
    if sim.enabled:
        from adapters.simulator import SimulatorConfig, serve_simulator

        sim_config = SimulatorConfig(system_id=sim.system_id, password=sim.password,
                                     receipt_delay_min=sim.delivery_delay,
                                     receipt_delay_max=sim.delivery_delay,
                                     mo_reply=sim.mo_reply, mo_numbers=sim.mo_numbers)
        port = await nursery.start(partial(serve_simulator, sim_config, host=sim.host,
                                           port=sim.port))
        carriers.append(SmppCarrier("simulator", sim.host, port, sim.system_id, sim.password,
                                    inbound=inbound_sink))
        logger.info("built-in SMSC simulator on %s:%d", sim.host, port)
    for c in config.smpp:
        carriers.append(SmppCarrier(c.name, c.host, c.port, c.system_id, c.password,
                                    window=c.window, packed_gsm7=c.packed_gsm7,
                                    concat="sar" if c.concat == "sar" else "udh",
                                    inbound=inbound_sink))
    for h in config.http_providers:
        carriers.append(ReceiptTap(_http_carrier(h), h.receipt_token,
                                   inbound_token=h.inbound_token or h.receipt_token))
    if not carriers:
        logger.warning("no carrier configured: messages are accepted and wait in the outbox")
    return carriers


def _http_carrier(h: cfg.HttpProviderConnectorConfig) -> Any:
    from adapters.http_provider import HttpCarrier, HttpProviderConfig

    def pairs(rows: tuple[tuple[str, ...], ...]) -> tuple[tuple[str, str], ...]:
        return tuple((a, b) for a, b in rows)

    return HttpCarrier(HttpProviderConfig(
        name=h.name, url=h.url, method=h.method, body_format=h.body_format,
        headers=pairs(h.headers), fields=pairs(h.fields), static_fields=pairs(h.static_fields),
        id_path=h.id_path, error_path=h.error_path, timeout=h.timeout, concurrency=h.concurrency,
        receipt_list_path=h.receipt_list_path, receipt_id_path=h.receipt_id_path,
        receipt_status_path=h.receipt_status_path, receipt_error_path=h.receipt_error_path,
        receipt_done_path=h.receipt_done_path, inbound_list_path=h.inbound_list_path,
        inbound_from_path=h.inbound_from_path, inbound_to_path=h.inbound_to_path,
        inbound_text_path=h.inbound_text_path, inbound_id_path=h.inbound_id_path,
        inbound_time_path=h.inbound_time_path))


class ReceiptTap:
    """Wraps an HTTP-provider carrier: keeps the receipt sink the Gateway hands to ``run`` so
    that ``POST /v1/receipts/{connector}`` can feed it (the provider pushes receipts to us),
    and reads the bodies of ``POST /v1/inbound/{connector}`` with the carrier's config."""

    def __init__(self, carrier: Any, token: str, *, inbound_token: str = "") -> None:
        self._carrier = carrier
        self.token = token
        self.inbound_token = inbound_token or token
        self.sink: Any = None

    @property
    def name(self) -> str:
        return str(self._carrier.name)

    @property
    def ready(self) -> bool:
        return bool(self._carrier.ready)

    def parse(self, body: bytes, content_type: str) -> list[Any]:
        from adapters.http_provider import parse_receipts

        return parse_receipts(self._carrier.config, body, content_type)

    def parse_inbound(self, body: bytes, content_type: str) -> list[Any]:
        from adapters.http_inbound import parse_inbound

        return parse_inbound(self._carrier.config, body, content_type, received_at=time.time())

    async def run(self, receipts: Any, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.sink = receipts
        try:
            await self._carrier.run(receipts, task_status=task_status)
        finally:
            self.sink = None

    async def submit_many(self, parts: Any) -> Any:
        return await self._carrier.submit_many(parts)


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
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")


def _announce(host: str, port: int, account: str, key: str | None) -> None:
    print(f"septet: listening on http://{host}:{port}", flush=True)
    if key:
        print(f"septet: dev account {account!r} API key: {key}", flush=True)
        print(f"  curl -H \"Authorization: Bearer {key}\" "
              f"-d '{{\"to\":\"+351912345678\",\"from\":\"Septet\",\"text\":\"Olá\"}}' "
              f"{host}:{port}/v1/messages", flush=True)
    elif account:
        print("septet: no dev key to show (keys are stored hashed); make one with "
              f"`septet accounts key {account}` or `septet accounts create NAME`", flush=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
