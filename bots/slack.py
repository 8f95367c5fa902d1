"""The Slack adapter, on slack-bolt's `AsyncApp`.

Bolt verifies signatures, acks events before the listener runs, and drives both
Socket Mode and HTTP mode; this module only maps Slack events to
`(thread_id, user_id, text)`, calls the engine and renders the reply.

Identity:
- user: `slack:<team_id>:<user_id>` (Slack user ids are unique only in a workspace);
- thread: `slack:<team_id>:<channel_id>:<thread_ts>` for channel mentions and threads;
  a DM's top-level messages share `slack:<team_id>:<channel_id>`, and a thread inside
  a DM is its own conversation (`...:<thread_ts>`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.models.blocks import (
    ContextActionsBlock,
    FeedbackButtonObject,
    FeedbackButtonsElement,
)
from slack_sdk.web.async_client import AsyncWebClient

from bots.chunking import split_message
from bots.ops import add_ops_routes
from bots.quiet import QuietPeriod
from bots.replies import FILES_ONLY, TROUBLE
from bots.slack_format import escape, to_mrkdwn
from bots.slack_home import SlackHome
from bots.slack_stream import MESSAGE_LIMIT, Delivery, StreamSupport, Target
from engine.bot import MemoryBot, Reply
from engine.inbox import Inbound
from engine.settings import Settings
from engine.turns import Ticket

logger = logging.getLogger(__name__)

THINKING = "_Thinking…_"
STATUS = "is thinking…"
LOADING = ["Looking through what you've told me…", "Thinking it over…"]
FEEDBACK_ACTION = "membot_feedback"
# The events the adapter listens to (deploy/slack-manifest.yaml subscribes to each; a
# listener for `message` needs the message.channels/groups/im subscriptions).
EVENTS = (
    "app_mention",
    "message",
    "app_home_opened",
    "assistant_thread_started",
    "assistant_thread_context_changed",
)
# Message subtypes that are a person talking; all others (edits, deletions, joins,
# bot messages, ...) are ignored.
USER_SUBTYPES = {None, "file_share", "thread_broadcast"}
_USER_REF = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")


def retry_handlers() -> list[AsyncRetryHandler]:
    """slack_sdk's own retries for every Web API call: a dropped connection, a 429 (after
    its Retry-After; Slack did not act on the call, so nothing is posted twice) and a
    500/503 once. Without them one 429 on chat.postMessage lost the answer."""
    return [
        AsyncConnectionErrorRetryHandler(max_retry_count=2),
        AsyncRateLimitErrorRetryHandler(max_retry_count=5),
        AsyncServerErrorRetryHandler(max_retry_count=1),
    ]


def message_key(team_id: str, channel_id: str, ts: str) -> str:
    """A message's identity in the inbox: the same for its `message` and `app_mention`
    events and for every retry of either."""
    return f"slack:{team_id}:{channel_id}:{ts}"


def user_key(team_id: str, user_id: str) -> str:
    return f"slack:{team_id}:{user_id}"


def thread_key(team_id: str, channel_id: str, thread_ts: str | None) -> str:
    base = f"slack:{team_id}:{channel_id}"
    return f"{base}:{thread_ts}" if thread_ts else base


class SlackAdapter:
    def __init__(
        self, bot: MemoryBot, settings: Settings, *, client: AsyncWebClient | None = None
    ) -> None:
        self.bot = bot
        self.settings = settings
        token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
        secret = settings.slack_signing_secret
        # One pooled HTTP session for every Web API call: without it slack_sdk opens (and
        # TLS-handshakes) a new connection per call, which under a burst of events steals
        # the event loop from acknowledging them. Closed by `aclose()`.
        self._session = None if client else aiohttp.ClientSession()
        self._client = client or AsyncWebClient(
            token=token,
            base_url=settings.slack_api_url,
            session=self._session,
            retry_handlers=retry_handlers(),
        )
        self._identity: AuthorizeResult | None = None
        self._identity_lock = asyncio.Lock()
        self.app = AsyncApp(
            client=self._client,
            authorize=lambda: self._identify(),  # bolt injects by name; a bound method has `self`
            signing_secret=secret.get_secret_value() if secret else "",
            process_before_response=False,  # ack first, think afterwards
        )
        self.streams = StreamSupport()  # whether chat.startStream works here, once known
        self.quiet = QuietPeriod()
        self._admins = {a.strip() for a in settings.slack_admins.split(",") if a.strip()}
        self.home = SlackHome(bot, user_key)  # the App Home tab
        self._register()

    # -- wiring ----------------------------------------------------------------------

    def _register(self) -> None:
        app = self.app
        app.middleware(self._note_arrival)
        listeners = {
            "app_mention": self._on_mention,
            "message": self._on_message,
            "app_home_opened": self.home.opened,
        }
        for event in EVENTS:
            # Sent to assistant apps (the manifest enables the assistant view). Nothing to
            # do, but an event without a listener is not acked and Slack keeps retrying it.
            app.event(event)(listeners.get(event, _nothing))
        app.command("/memories")(self._memories_command)
        app.command("/forget")(self._forget_command)
        app.command("/link")(self._link_command)
        app.command("/unlink")(self._unlink_command)
        app.action("forget_confirm")(self._forget_confirmed)
        app.action("forget_cancel")(self._forget_cancelled)
        app.action(FEEDBACK_ACTION)(self._feedback_given)
        self.home.register(app)
        app.error(self._on_error)

    async def _identify(self) -> AuthorizeResult:
        """Who the bot is, from one `auth.test`. Bolt's default authorization caches it
        too, but every request that arrives before the first answer calls `auth.test`
        itself, and the ack waits for it: a burst after a restart meant one Web API round
        trip per event. Here the first caller asks and the rest wait for its answer."""
        if self._identity is None:
            async with self._identity_lock:
                if self._identity is None:
                    self._identity = AuthorizeResult.from_auth_test_response(
                        bot_token=self._client.token,
                        auth_test_response=await self._client.auth_test(),
                    )
        return self._identity

    async def _note_arrival(self, next: Any) -> BoltResponse | None:
        # Duplicates are dropped by the engine's inbox, keyed by the message (its event
        # and every retry or replica share it), not here by event id.
        self.quiet.arrived()
        return await next()

    async def _on_error(self, error: Exception, body: Any) -> BoltResponse | None:
        if _raised_in_bolt(error):
            # bolt tripping over a body it cannot read (e.g. `"view": null` when it logs an
            # unmatched request): not from Slack, nothing of ours ran. Refuse it quietly.
            logger.info("slack: refused a malformed request (%s)", type(error).__name__)
            return BoltResponse(status=400, body="malformed request")
        kind = body.get("type") if isinstance(body, dict) else None
        logger.error("slack: unhandled error for %s", kind, exc_info=error)
        return None

    # -- messages --------------------------------------------------------------------

    async def _on_mention(self, event: dict[str, Any], body: dict[str, Any], context: Any) -> None:
        team = _team(event, body)
        channel, ts, person = _str(event, "channel"), _str(event, "ts"), _str(event, "user")
        if not (channel and ts and person) or event.get("bot_id"):
            return  # malformed, or another bot mentioning us: never answer (no bot loops)
        if person == context.bot_user_id:
            return
        thread_ts = _str(event, "thread_ts") or ts
        await self._answer(
            event,
            context,
            team=team,
            thread_id=thread_key(team, channel, thread_ts),
            reply_in=thread_ts,
        )

    async def _on_message(self, event: dict[str, Any], body: dict[str, Any], context: Any) -> None:
        person, channel, subtype = _str(event, "user"), _str(event, "channel"), event.get("subtype")
        if not isinstance(subtype, str | None) or subtype not in USER_SUBTYPES:
            return  # edits, deletions, joins, ...: never answer
        if event.get("bot_id") or not person or not channel or person == context.bot_user_id:
            return  # other bots, ourselves, malformed events: never answer, never loop
        team = _team(event, body)
        thread_ts = _str(event, "thread_ts")
        if event.get("channel_type") == "im":
            thread_id = thread_key(team, channel, thread_ts)
            await self._answer(event, context, team=team, thread_id=thread_id, reply_in=thread_ts)
            return
        if not thread_ts or f"<@{context.bot_user_id}" in _str(event, "text"):
            return  # not in a thread, or a mention: the app_mention listener answers it
        thread_id = thread_key(team, channel, thread_ts)
        if await self.bot.takes_part_in(thread_id):
            await self._answer(event, context, team=team, thread_id=thread_id, reply_in=thread_ts)

    async def _answer(
        self,
        event: dict[str, Any],
        context: Any,
        *,
        team: str,
        thread_id: str,
        reply_in: str | None,
    ) -> None:
        channel, person, ts = _str(event, "channel"), _str(event, "user"), _str(event, "ts")
        text = _strip_mention(_str(event, "text"), context.bot_user_id)
        files_only = not text.strip() and bool(event.get("files"))
        ticket = await self.bot.accept(
            Inbound(
                key=message_key(team, channel, ts),
                platform="slack",
                user_id=user_key(team, person),
                thread_id=thread_id,
                text=text,
                # The message's own ts: its episode is written once however often Slack
                # delivers it, and dated when it was sent, not when it was answered.
                message_id=ts,
                at=_sent_at(event) or datetime.now(UTC),
                route={
                    "channel": channel,
                    "reply_in": reply_in,
                    "assistant": event.get("channel_type") == "im" and bool(reply_in),
                },
            )
        )
        if ticket is None:
            logger.info("slack: %s was taken on before; not answered again", ts)
            return
        try:
            if files_only:
                await ticket.note(reply=FILES_ONLY)
            else:
                await self.quiet.wait()  # acknowledge a burst before working on it
            await self._complete(context.client, ticket)
        finally:
            await ticket.release()

    async def _resume(self, ticket: Ticket) -> None:
        """A message a dead process accepted: answered where it left off."""
        await self._complete(self._client, ticket)

    async def _complete(self, client: AsyncWebClient, ticket: Ticket) -> None:
        """Show progress, answer as the model writes, and close: each message of the answer
        is saved to the ticket as soon as it exists, so a takeover continues (with
        chat.update) instead of repeating."""
        if _legacy_parts(ticket):
            await self._complete_legacy(client, ticket)
            return
        known = ticket.inbound.reply is not None
        delivery = await self._delivery(client, ticket)
        try:
            async with delivery:
                reply = await self._answer_into(ticket, delivery, known)
                text = reply.text[delivery.base :] if known else reply.text
                if known:
                    delivery.add(text)
                await delivery.finish(text, blocks=_feedback_blocks(ticket, reply))
        except SlackApiError as err:
            if err.response.status_code == 429 or err.response.status_code >= 500:
                # Slack is struggling (past the client's own retries): the entry stays
                # open and the answer is delivered by a later sweep, where it left off.
                logger.warning("slack: delivery postponed (%s)", _error_of(err))
                return
            logger.warning("slack: could not deliver the answer (%s)", _error_of(err))
        except (aiohttp.ClientError, TimeoutError) as err:
            logger.warning("slack: delivery postponed (%s)", type(err).__name__)
            return
        await ticket.done()

    async def _answer_into(self, ticket: Ticket, delivery: Delivery, known: bool) -> Reply:
        """The turn, each piece handed to `delivery` as the model writes it (a reply known
        before is delivered whole by the caller, from where delivery had got to)."""
        try:
            stream = ticket.stream()
            async with stream:
                async for piece in stream:
                    if not known:
                        delivery.add(piece)
            return stream.reply
        except Exception:
            logger.exception("slack: answering in %s failed", ticket.inbound.thread_id)
            return Reply(TROUBLE, "", False, error=True)

    async def _delivery(self, client: AsyncWebClient, ticket: Ticket) -> Delivery:
        """How this answer goes out. A takeover finishes the messages a dead process left
        with edits (from where delivery got to if the answer was known, else rewriting
        them all); a reply known before goes out whole; a new answer streams where Slack
        lets it, else edits a placeholder."""
        route, target = ticket.route, _target(ticket)
        await _drop(client, target.channel, route.get("obsolete"))
        placeholder, earlier = route.get("placeholder"), _ts_list(route.get("earlier"))
        spare = _ts_list(route.get("spare"))
        reply, common = ticket.inbound.reply, {"client": client, "target": target}
        common |= {"note": ticket.note, "support": self.streams}
        offset = route.get("offset", 0)
        if reply is not None and isinstance(offset, int) and 0 <= offset <= len(reply):
            seeds = ([placeholder] if placeholder else []) + spare
            return Delivery(seeds=seeds, earlier=earlier, base=offset, **common)
        if placeholder or earlier or spare:
            return Delivery(
                seeds=[*earlier, *([placeholder] if placeholder else []), *spare], **common
            )
        return await self._new_delivery(client, ticket, target, common)

    async def _new_delivery(
        self, client: AsyncWebClient, ticket: Ticket, target: Target, common: dict[str, Any]
    ) -> Delivery:
        """Progress first: the assistant thread's status line, else (unless the answer is
        known to stream) a "Thinking…" placeholder. Then a stream where one can go (a
        thread, in a workspace that has not refused it), else edits."""
        streams = bool(target.thread_ts) and self.streams.allows(target.channel)
        status = ticket.route.get("assistant") and await self._set_status(client, target)
        thinking = None
        if not status and not (streams and self.streams.known):
            thinking = await self._post_thinking(client, target)
            await ticket.note(placeholder=thinking)
        if streams:
            return Delivery(stream=True, thinking=thinking, **common)
        return Delivery(seeds=[thinking] if thinking else [], **common)

    async def _set_status(self, client: AsyncWebClient, target: Target) -> bool:
        """The assistant thread's "is thinking…" (Slack clears it when the answer comes)."""
        try:
            await client.assistant_threads_setStatus(
                channel_id=target.channel,
                thread_ts=target.thread_ts or "",
                status=STATUS,
                loading_messages=LOADING,
            )
        except SlackApiError:
            return False  # not an assistant thread: a placeholder instead
        return True

    async def _post_thinking(self, client: AsyncWebClient, target: Target) -> str | None:
        try:
            posted = await client.chat_postMessage(
                channel=target.channel, thread_ts=target.thread_ts, text=THINKING
            )
        except SlackApiError as err:  # the answer is still tried: it may go through
            logger.warning("slack: could not post a placeholder (%s)", _error_of(err))
            return None
        return str(posted["ts"])

    async def _complete_legacy(self, client: AsyncWebClient, ticket: Ticket) -> None:
        """An entry an older version left half delivered (`posted`: how many of its parts,
        cut from the whole answer's mrkdwn, are in Slack): the rest of them."""
        route = ticket.route
        parts = split_message(to_mrkdwn(ticket.inbound.reply or ""), MESSAGE_LIMIT)
        for n in range(int(route["posted"]), len(parts)):
            await client.chat_postMessage(
                channel=route["channel"], thread_ts=route.get("reply_in"), text=parts[n]
            )
            await ticket.note(posted=n + 1)
        await ticket.done()

    async def _feedback_given(self, ack: Any, body: dict[str, Any], respond: Any) -> None:
        """A thumbs up or down under an answer: counted and kept with the answer. Only the
        person who asked rates it (one rating is kept per answer, and it is theirs to
        give); anyone else is told so, privately."""
        await ack()
        rating = _feedback_choice(body)
        user = body.get("user") if isinstance(body.get("user"), dict) else {}
        team = _str(body.get("team") if isinstance(body.get("team"), dict) else {}, "id")
        team, clicker = team or _str(user, "team_id"), _str(user, "id")
        if rating is None or not clicker or not rating["thread"].startswith(f"slack:{team}:"):
            logger.info("slack: a feedback click that is not ours was ignored")
            return
        if rating["asker"] != user_key(team, clicker):
            await respond(
                text="Only the person who asked can rate this answer.",
                response_type="ephemeral",
                replace_original=False,
            )
            return
        await self.bot.feedback(
            user_id=rating["asker"],
            thread_id=rating["thread"],
            message_id=rating["message"],
            good=rating["rating"] == "good",
        )

    # -- slash commands ----------------------------------------------------------------

    async def _memories_command(self, ack: Any, command: dict[str, Any], respond: Any) -> None:
        await ack()
        person = user_key(command["team_id"], command["user_id"])
        items = await self.bot.memories(person, limit=1_000)  # listed to Slack's limits below
        if not items:
            await respond(text="I don't remember anything about you yet.")
            return
        lines = [f"{n}. {_listed(str(i.value.get('text', '')))}" for n, i in enumerate(items, 1)]
        for part in listing_parts(["What I remember about you:", *lines]):
            await respond(text=part)

    async def _link_command(self, ack: Any, command: dict[str, Any], respond: Any) -> None:
        """`/link` gives a one-time code; `/link CODE` (the code from another account)
        makes both accounts one person. Answered to the caller only."""
        await ack()
        person = user_key(command["team_id"], command["user_id"])
        typed = (command.get("text") or "").strip()
        if typed:
            await respond(text=(await self.bot.link(person, typed)).message)
            return
        code = await self.bot.link_code(person)
        lines = [
            f"Your link code: *{code.code}* (works once, for 10 minutes). On your other "
            f"account (Discord, or another Slack workspace), type `/link {code.code}` and "
            "I'll remember you as one person on both."
        ]
        if others := len(await self.bot.linked_accounts(person)) - 1:
            lines.append(
                f"This account is linked to {others} other account{'s' if others > 1 else ''}"
                "; `/unlink` separates it again."
            )
        await respond(text="\n".join(lines))

    async def _unlink_command(self, ack: Any, command: dict[str, Any], respond: Any) -> None:
        await ack()
        person = user_key(command["team_id"], command["user_id"])
        await respond(text=(await self.bot.unlink(person)).message)

    async def _forget_command(
        self, ack: Any, command: dict[str, Any], respond: Any, client: AsyncWebClient
    ) -> None:
        await ack()
        team, actor = command["team_id"], command["user_id"]
        argument = (command.get("text") or "").strip()
        target = actor
        if argument:
            found = _USER_REF.fullmatch(argument)
            if not found:
                await respond(
                    text="Use `/forget` to erase what I remember about you, or (admins) "
                    "`/forget @someone` for another person."
                )
                return
            target = found[1]
        if target != actor and not await self._is_admin(client, team, actor):
            await respond(
                text="Only workspace admins can erase someone else's memories. Nothing was erased."
            )
            return
        count = await self.bot.count_memories(
            user_key(team, target), said_on_this_account=target != actor
        )
        whose = "your" if target == actor else f"<@{target}>'s"
        if not count:
            await respond(text=f"There is nothing to forget: I hold none of {whose} memories.")
            return
        value = json.dumps({"team": team, "target": target})
        question = f"Erase all {count} of {whose} memories?"
        if target != actor and len(await self.bot.linked_accounts(user_key(team, target))) > 1:
            question = (
                f"Erase the {count} memor{'y' if count == 1 else 'ies'} <@{target}> gave in "
                "this workspace? Their account is linked elsewhere: it will be unlinked, and "
                "what they said there stays."
            )
        await respond(text=question, blocks=_confirmation_blocks(question, value))

    async def _forget_confirmed(
        self, ack: Any, body: dict[str, Any], respond: Any, client: AsyncWebClient
    ) -> None:
        await ack()
        choice = _button_choice(body)
        user = body.get("user") if isinstance(body.get("user"), dict) else {}
        team = _str(body.get("team") if isinstance(body.get("team"), dict) else {}, "id")
        team, clicker = team or _str(user, "team_id"), _str(user, "id")
        if choice is None or not clicker:
            await respond(replace_original=True, text="This button is no longer valid.")
            return
        target = choice["target"]
        if choice["team"] != team or (
            clicker != target and not await self._is_admin(client, team, clicker)
        ):
            await respond(replace_original=True, text="You can't erase these memories.")
            return
        if clicker == target:
            erased = await self.bot.forget(user_key(team, target))
        else:
            erased = await self.bot.erase_member(
                user_key(team, target), actor=user_key(team, clicker), platform="slack"
            )
        whose = "your" if clicker == target else f"<@{target}>'s"
        await respond(replace_original=True, text=f"Done: erased {erased} of {whose} memories.")

    async def _forget_cancelled(self, ack: Any, respond: Any) -> None:
        await ack()
        await respond(replace_original=True, text="Cancelled. Nothing was erased.")

    async def _is_admin(self, client: AsyncWebClient, team: str, user: str) -> bool:
        if user in self._admins or user_key(team, user) in self._admins:
            return True
        try:
            info = (await client.users_info(user=user))["user"]
        except SlackApiError:
            logger.warning("slack: users.info failed for %s; treating as non-admin", user)
            return False
        return bool(info.get("is_admin") or info.get("is_owner") or info.get("is_primary_owner"))

    # -- running -------------------------------------------------------------------------

    async def aclose(self) -> None:
        if self._session:
            await self._session.close()

    def web_app(self) -> web.Application:
        """HTTP mode: bolt's aiohttp app serving `/slack/events` (events, commands and
        interactivity all post there), plus the ops routes (`/healthz`, `/readyz`,
        `/metrics`), so the process runs one HTTP server."""
        app = self.app.web_app(path="/slack/events", port=self.settings.http_port)
        app.middlewares.append(self._unavailable_while_draining)
        app.middlewares.append(_refuse_unparsable)
        add_ops_routes(app, self.bot)
        self.bot.watch_orphans("slack", self._resume)
        return app

    @web.middleware
    async def _unavailable_while_draining(
        self, request: web.Request, handler: Any
    ) -> web.StreamResponse:
        """Shutting down: Slack gets a 503 for anything new and retries it later (another
        replica, or this one after its restart), instead of an ack for work never done."""
        if self.bot.draining and request.path == "/slack/events":
            return web.Response(status=503, text="shutting down")
        return await handler(request)

    async def run(self) -> None:
        """Serve until cancelled: Socket Mode with an app token, else HTTP mode."""
        if self.settings.slack_app_token:
            handler = AsyncSocketModeHandler(
                self.app, self.settings.slack_app_token.get_secret_value()
            )
            logger.info("slack: connecting in Socket Mode")
            self.bot.watch_orphans("slack", self._resume)
            try:
                await handler.start_async()
            finally:
                await handler.close_async()
                await self.aclose()
            return
        if not self.settings.slack_signing_secret:
            raise RuntimeError(
                "Slack HTTP mode needs SLACK_SIGNING_SECRET (or use SLACK_APP_TOKEN)"
            )
        runner = web.AppRunner(self.web_app())
        await runner.setup()
        site = web.TCPSite(runner, self.settings.http_host, self.settings.http_port)
        await site.start()
        logger.info(
            "slack: HTTP mode on port %d, path /slack/events (and /healthz, /readyz, /metrics)",
            self.settings.http_port,
        )
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()
            await self.aclose()


async def _nothing() -> None:
    return None


def _target(ticket: Ticket) -> Target:
    """Where the ticket's answer goes; who asked is in its user key (slack:<team>:<user>)."""
    route = ticket.route
    _, team, user = [*ticket.inbound.user_id.split(":", 2), "", ""][:3]
    return Target(route["channel"], route.get("reply_in") or None, team, user)


def _ts_list(value: Any) -> list[str]:
    return [ts for ts in value if isinstance(ts, str) and ts] if isinstance(value, list) else []


def _legacy_parts(ticket: Ticket) -> bool:
    route = ticket.route
    return (
        ticket.inbound.reply is not None
        and isinstance(route.get("posted"), int)
        and route["posted"] > 0
        and "offset" not in route
    )


async def _drop(client: AsyncWebClient, channel: str, ts: Any) -> None:
    """Delete a placeholder a stream had replaced, if a crash left it behind."""
    if isinstance(ts, str) and ts:
        try:
            await client.chat_delete(channel=channel, ts=ts)
        except SlackApiError:
            pass  # gone already


def _error_of(err: SlackApiError) -> str:
    return str(err.response.get("error") or err.response.status_code)


def _feedback_blocks(ticket: Ticket, reply: Reply) -> list[dict[str, Any]] | None:
    """Thumbs up and down under an answer (Slack's feedback buttons, in a context_actions
    block); each button's value says what is rated: the thread, the person's message, who
    asked. None for notices and apologies: there is nothing to rate."""
    if reply.error or reply.refused:
        return None
    inbound = ticket.inbound

    def button(rating: str, emoji: str, label: str) -> FeedbackButtonObject:
        value = {"rating": rating, "thread": inbound.thread_id}
        value |= {"message": inbound.message_id, "asker": inbound.user_id}
        return FeedbackButtonObject(
            text=emoji, accessibility_label=label, value=json.dumps(value, separators=(",", ":"))
        )

    buttons = FeedbackButtonsElement(
        action_id=FEEDBACK_ACTION,
        positive_button=button("good", "👍", "This answer was helpful"),
        negative_button=button("bad", "👎", "This answer was not helpful"),
    )
    block = ContextActionsBlock(elements=[buttons], block_id=f"feedback:{inbound.message_id}")
    return [block.to_dict()]


def _feedback_choice(body: dict[str, Any]) -> dict[str, str] | None:
    """A feedback button's value, or None if it is not one of ours."""
    try:
        choice = json.loads(body["actions"][0]["value"])
    except (TypeError, KeyError, IndexError, ValueError):
        return None
    keys = ("rating", "thread", "message", "asker")
    if not isinstance(choice, dict) or not all(isinstance(choice.get(k), str) for k in keys):
        return None
    return choice if choice["rating"] in ("good", "bad") else None


def _team(event: dict[str, Any], body: dict[str, Any]) -> str:
    return event.get("team") or body.get("team_id") or "unknown"


def _raised_in_bolt(error: BaseException) -> bool:
    """True when the innermost frame of `error` is slack_bolt's own code."""
    tb = error.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return "/slack_bolt/" in tb.tb_frame.f_code.co_filename.replace("\\", "/")


@web.middleware
async def _refuse_unparsable(request: web.Request, handler: Any) -> web.StreamResponse:
    """slack_bolt (1.30) parses a request body and builds its context before checking the
    signature, without type checks: a body like `[]` or `{"event": 5}` raises inside bolt
    and would be a 500 with a traceback. Such a request is not from Slack: answer 400."""
    try:
        return await handler(request)
    except (AttributeError, TypeError, ValueError, KeyError, IndexError) as err:
        logger.info("slack: refused an unparsable request (%s)", type(err).__name__)
        return web.Response(status=400, text="malformed request")


def _str(mapping: Any, key: str) -> str:
    """A string field of an event, or "" when it is missing or not a string."""
    value = mapping.get(key) if isinstance(mapping, dict) else None
    return value if isinstance(value, str) else ""


def _button_choice(body: dict[str, Any]) -> dict[str, str] | None:
    """The erase button's `{"team", "target"}`, or None if the value is not ours."""
    actions = body.get("actions")
    try:
        choice = json.loads(actions[0]["value"])  # type: ignore[index]
    except (TypeError, KeyError, IndexError, ValueError):
        return None
    if not isinstance(choice, dict) or not all(
        isinstance(choice.get(k), str) for k in ("team", "target")
    ):
        return None
    return choice


def _sent_at(event: dict[str, Any]) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(_str(event, "ts")), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _strip_mention(text: str, bot_user_id: str | None) -> str:
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>", "", text)
    return text.strip()


LISTED_LIMIT = 1_000  # characters of one memory in the /memories list
RESPONSES = 5  # Slack takes at most 5 posts to one response_url


def _listed(text: str) -> str:
    """One memory in the /memories list: escaped, and cut when long (the Home tab has the
    rest; the stored text is never changed)."""
    safe = escape(text)
    if len(safe) <= LISTED_LIMIT:
        return safe
    return re.sub(r"&[a-z]{0,4}\Z", "", safe[: LISTED_LIMIT - 1]) + "…"


def listing_parts(lines: list[str], limit: int = MESSAGE_LIMIT) -> list[str]:
    """Lines packed into at most `RESPONSES` messages of at most `limit` characters (a
    line is never split; none is longer than a message); when they do not all fit, the
    last message says how many were left out and where to see them all."""
    parts: list[str] = []
    counts: list[int] = []  # lines in each part
    for line in lines:
        if parts and len(parts[-1]) + 1 + len(line) <= limit:
            parts[-1] += "\n" + line
            counts[-1] += 1
        else:
            parts.append(line[:limit])
            counts.append(1)
    if len(parts) <= RESPONSES:
        return parts
    kept = parts[: RESPONSES - 1]
    left = len(lines) - sum(counts[: RESPONSES - 1])
    kept.append(f"…and {left} more. Open my Home tab to page through all of them.")
    return kept


def _confirmation_blocks(question: str, value: str) -> list[dict[str, Any]]:
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": question}},
        {
            "type": "actions",
            "elements": [
                {
                    "type": "button",
                    "style": "danger",
                    "text": {"type": "plain_text", "text": "Erase"},
                    "action_id": "forget_confirm",
                    "value": value,
                },
                {
                    "type": "button",
                    "text": {"type": "plain_text", "text": "Cancel"},
                    "action_id": "forget_cancel",
                    "value": value,
                },
            ],
        },
    ]
