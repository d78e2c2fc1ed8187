"""The messaging service: entrypoints only.

Notifications: an event (or a reminder request) becomes one message per
recipient in the ``messages`` collection, in the inbox's transaction, with
its channel chosen and its words rendered (encrypted until sent). A timer
(and ``dispatch_due``) takes due messages one by one, hands each to its
channel, and records the outcome with ``message.sent`` / ``message.failed``
in the same write. Webhooks live in :mod:`services.messaging.webhooks`.
"""
import logging
import uuid
from datetime import time

import eventlet
from nameko.dependency_providers import Config
from nameko.rpc import RpcProxy, rpc
from nameko.timer import Timer

from services.messaging import domain, store, templates
from services.messaging.channels import Channels, DeliveryFailed
from services.messaging.schemas import (DispatchResultSchema, DispatchSchema,
                                        MessageSchema, MessagesQuerySchema,
                                        NewReminderSchema, PreferenceKeySchema,
                                        PreferencesOutSchema, PreferencesSchema,
                                        ReminderSchema, SettingsOutSchema, SettingsSchema,
                                        TemplateKeySchema, TemplateOutSchema,
                                        TemplateSchema)
from services.messaging.webhooks.entrypoints import WebhookEntrypoints
from shared.crypto import Encryption
from shared.errors import (DOMAIN_ERRORS, EventRejected, NotFound, ServiceUnavailable,
                           ValidationFailed)
from shared.events import load_event, new_event
from shared.events.envelope import utcnow
from shared.inbox import Inbox, run_in_transaction
from shared.messaging import event_handler
from shared.observability import log_fields
from shared.outbox import Outbox
from shared.service_base import ServiceBase
from shared.storage import Database, supports_transactions
from shared.validation import load_or_fail

log = logging.getLogger(__name__)

DISPATCH_BATCH = 200


class DispatchTimer(Timer):
    """A timer whose interval is ``MESSAGING.DISPATCH_INTERVAL_SECONDS``."""

    def __init__(self, **kwargs):
        super().__init__(interval=None, **kwargs)

    def setup(self):
        settings = self.container.config.get("MESSAGING", {}) or {}
        self.interval = float(settings.get("DISPATCH_INTERVAL_SECONDS", 1.0))


dispatch_timer = DispatchTimer.decorator


class MessagingService(WebhookEntrypoints, ServiceBase):
    name = "messaging"

    db = Database(prepare=store.ensure_indexes)
    outbox = Outbox(store.MESSAGES)
    inbox = Inbox()
    cipher = Encryption()
    channels = Channels()
    config = Config()
    referrals = RpcProxy("referrals")
    training = RpcProxy("training")
    gateway = RpcProxy("gateway")

    # -- events in: who to tell --------------------------------------------------

    @event_handler("referrals", "referral.received")
    def notify_referral_received(self, body):
        self._notify(body, "referral.received")

    @event_handler("matching", "match.proposed")
    def notify_match_proposed(self, body):
        self._notify(body, "match.proposed")

    @event_handler("matching", "match.confirmed")
    def notify_match_confirmed(self, body):
        self._notify(body, "match.confirmed")

    @event_handler("referrals", "safeguarding.concern_raised")
    def notify_safeguarding_concern(self, body):
        self._notify(body, "safeguarding.concern_raised")

    @event_handler("training", "dbs.expiring")
    def notify_dbs_expiring(self, body):
        self._notify(body, "dbs.expiring")

    # -- time passing: sending what is due ------------------------------------------

    @dispatch_timer()
    def dispatch(self):
        self._dispatch(utcnow())

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def dispatch_due(self, now=None):
        """Send every message due at ``now`` (ISO timestamp; the clock if
        None): for ops and tests, never needed in normal running."""
        form = load_or_fail(DispatchSchema(), {"now": now})
        return DispatchResultSchema().dump(self._dispatch(form["now"] or utcnow()))

    # -- templates ----------------------------------------------------------------

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def list_templates(self, site_id):
        """Every template key with what is in force: the site's own or the default."""
        saved = {(t["kind"], t["audience"], t["language"]): t
                 for t in store.Templates(self.db, site_id).listing()}
        keys = sorted(set(saved) | {(kind, audience, "en") for kind, audiences in
                                    domain.AUDIENCES.items() for audience in audiences})
        return TemplateOutSchema(many=True).dump([
            self._template_view(kind, audience, language, saved.get((kind, audience, language)))
            for kind, audience, language in keys])

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def get_template(self, site_id, kind, audience, language):
        key = self._template_key(kind, audience, language)
        saved = store.Templates(self.db, site_id).get(*key)
        if saved is None and language != "en":
            raise NotFound(f"No {language} template for {kind} to a {audience} "
                           "(the English one is used).")
        return TemplateOutSchema().dump(self._template_view(*key, saved))

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def put_template(self, site_id, kind, audience, language, payload, actor_id=None):
        """Save a site's template; one that cannot be rendered (bad syntax, an
        unknown variable, a forbidden attribute) is refused, naming the part."""
        key = self._template_key(kind, audience, language)
        form = load_or_fail(TemplateSchema(), payload)
        errors = templates.check(form, kind)
        if errors:
            raise ValidationFailed("The template cannot be rendered.", errors)
        saved = store.Templates(self.db, site_id).put(*key, form, utcnow(), actor_id)
        return TemplateOutSchema().dump(self._template_view(*key, saved))

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def delete_template(self, site_id, kind, audience, language):
        key = self._template_key(kind, audience, language)
        if not store.Templates(self.db, site_id).delete(*key):
            raise NotFound(f"The site has no {language} template for {kind} to a {audience}.")

    # -- preferences ----------------------------------------------------------------

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def get_preferences(self, site_id, recipient_kind, person_id):
        key = load_or_fail(PreferenceKeySchema(), {"recipient_kind": recipient_kind,
                                                   "person_id": person_id})
        saved = store.Preferences(self.db, site_id).get(**key)
        return PreferencesOutSchema().dump(saved or dict(
            key, preferred_channel=None, opt_outs=[], updated_at=None))

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def put_preferences(self, site_id, recipient_kind, person_id, payload):
        key = load_or_fail(PreferenceKeySchema(), {"recipient_kind": recipient_kind,
                                                   "person_id": person_id})
        form = load_or_fail(PreferencesSchema(), payload)
        form["opt_outs"] = sorted(set(form["opt_outs"]))
        if form["preferred_channel"] in form["opt_outs"]:
            raise ValidationFailed("The request has invalid fields.", {
                "preferred_channel": ["Cannot be a channel the person opted out of."]})
        saved = store.Preferences(self.db, site_id).put(
            key["recipient_kind"], key["person_id"], form, utcnow())
        return PreferencesOutSchema().dump(saved)

    # -- the delivery log and site settings -------------------------------------------

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def list_messages(self, site_id, query=None):
        query = load_or_fail(MessagesQuerySchema(), query or {})
        return MessageSchema(many=True).dump(store.Messages(self.db, site_id).search(query))

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def get_settings(self, site_id):
        return self._settings_view(site_id)

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def put_settings(self, site_id, payload, actor_id=None):
        form = load_or_fail(SettingsSchema(), payload)
        store.Settings(self.db, site_id).put(form, utcnow(), actor_id)
        return self._settings_view(site_id)

    # -- contact reminders --------------------------------------------------------------

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def schedule_contact_reminder(self, site_id, payload, actor_id=None):
        """Remind the volunteer and the parent (if they consented) of a
        planned contact, the day before it."""
        form = load_or_fail(NewReminderSchema(), payload)
        now = utcnow()
        settings = self._settings()
        remind_at = domain.reminder_time(
            form["contact_at"], now, time.fromisoformat(settings["REMINDER_AT"]),
            self._quiet_hours(site_id).timezone)
        if remind_at is None:
            raise ValidationFailed("The request has invalid fields.",
                                   {"contact_at": ["Must be in the future."]})
        data = dict(form, contact_at=form["contact_at"].isoformat())
        details = self._details(site_id, domain.CONTACT_REMINDER, data)
        reminder_id = str(uuid.uuid4())
        messages = self._compose(site_id, domain.CONTACT_REMINDER, data, details, now,
                                 reminder_id=reminder_id, due=remind_at)
        reminder = dict(form, _id=reminder_id, remind_at=remind_at, status="scheduled",
                        message_ids=[m["_id"] for m in messages], created_at=now,
                        created_by=actor_id)

        def write(session):
            store.Reminders(self.db, site_id, session).add(reminder)
            for message in messages:
                store.Messages(self.db, site_id, session).add(message)
        self._atomically(write)
        return ReminderSchema().dump(reminder)

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def cancel_contact_reminder(self, site_id, reminder_id):
        now = utcnow()
        reminder = store.Reminders(self.db, site_id).cancel(reminder_id, now)
        if reminder is None:
            raise NotFound(f"No scheduled reminder {reminder_id}.")
        store.Messages(self.db, site_id).cancel_for_reminder(reminder_id, now)
        return ReminderSchema().dump(reminder)

    # -- helpers (not entrypoints) ----------------------------------------------------------

    def _settings(self):
        settings = dict(self.config.get("MESSAGING", {}) or {})
        settings.setdefault("MAX_ATTEMPTS", 5)
        settings.setdefault("RETRY_DELAYS_SECONDS", [30, 120, 600, 1800])
        settings.setdefault("RPC_TIMEOUT_SECONDS", 10)
        settings.setdefault("CLAIM_SECONDS", 120)
        settings.setdefault("DEFAULT_CHANNEL_ORDER", [domain.EMAIL, domain.SMS])
        settings.setdefault("REMINDER_AT", "10:00")
        settings.setdefault("QUIET_HOURS", {})
        return settings

    def _quiet_hours(self, site_id):
        saved = (store.Settings(self.db, site_id).get() or {}).get("quiet_hours")
        if saved:
            return domain.QuietHours.parse(saved["start"], saved["end"], saved["timezone"])
        quiet = self._settings()["QUIET_HOURS"]
        return domain.QuietHours.parse(quiet.get("START", "21:00"), quiet.get("END", "08:00"),
                                       quiet.get("TIMEZONE", "Europe/London"))

    def _settings_view(self, site_id):
        saved = (store.Settings(self.db, site_id).get() or {}).get("quiet_hours")
        quiet = self._quiet_hours(site_id)
        return SettingsOutSchema().dump({
            "site_id": site_id, "source": "site" if saved else "default",
            "quiet_hours": {"start": quiet.start.strftime("%H:%M"),
                            "end": quiet.end.strftime("%H:%M"), "timezone": quiet.timezone}})

    def _atomically(self, write):
        if supports_transactions(self.db.client):
            run_in_transaction(self.db.client, write)
        else:
            write(None)

    def _ask(self, what, call):
        """An RPC to another service, bounded (nameko 2 would wait for ever)."""
        timeout = float(self._settings()["RPC_TIMEOUT_SECONDS"])
        with eventlet.Timeout(timeout, ServiceUnavailable(f"No answer for {what} in time.")):
            return call()

    def _details(self, site_id, kind, data):
        """Contact details for a kind's audience, over RPC (events carry none)."""
        lookups, details = domain.LOOKUPS[kind], {}
        if domain.REFERRAL in lookups:
            details[domain.REFERRAL] = self._ask("referrals.contact_details", lambda: (
                self.referrals.contact_details(site_id, data["referral_id"])))
        if domain.VOLUNTEER_DETAILS in lookups:
            details[domain.VOLUNTEER_DETAILS] = self._ask("training.contact_details", lambda: (
                self.training.contact_details(site_id, data["volunteer_id"])))
        if domain.STAFF_LIST in lookups:
            details[domain.STAFF_LIST] = self._ask("gateway.staff_contacts", lambda: (
                self.gateway.staff_contacts(site_id)))
        return details

    def _notify(self, body, event_type):
        envelope, data = load_event(body, {event_type})
        site_id, kind = envelope["siteid"], domain.KIND_FOR_EVENT[event_type]
        try:
            details = self._details(site_id, kind, data)
        except NotFound as error:
            raise EventRejected(f"Cannot notify of {event_type}: {error.detail}")
        messages = self._compose(site_id, kind, data, details, utcnow(),
                                 cause=envelope)

        def record(session):
            for message in messages:
                store.Messages(self.db, site_id, session).add(message)
        if self.inbox.apply_once(envelope, record):
            log.info("notifications queued", extra=log_fields(
                event_id=envelope["id"], kind=kind, site_id=site_id,
                messages=len(messages),
                skipped=sum(m["status"] == domain.SKIPPED for m in messages)))

    def _compose(self, site_id, kind, data, details, now, cause=None, reminder_id=None,
                 due=None):
        """One message per recipient: channel chosen, words rendered and
        sealed, when it may go decided (quiet hours)."""
        settings = self._settings()
        quiet = self._quiet_hours(site_id)
        preferences = store.Preferences(self.db, site_id)
        start = due or now
        messages = []
        for recipient in domain.recipients(kind, data, details):
            message_id = str(uuid.uuid4())
            channel, reason = domain.choose_channel(
                recipient, preferences.get(recipient.recipient_kind, recipient.person_id),
                self.channels.available, settings["DEFAULT_CHANNEL_ORDER"])
            message = {
                "_id": message_id, "kind": kind, "recipient_kind": recipient.recipient_kind,
                "person_id": recipient.person_id, "channel": channel,
                "urgent": recipient.urgent, "language": recipient.language,
                "attempts": 0, "created_at": now, "sent_at": None, "failed_at": None,
                "error": None, "content": None, "reminder_id": reminder_id,
                "cause_event_id": cause["id"] if cause else None,
                "correlation_id": cause["correlationid"] if cause else None}
            if channel is None:
                message.update(status=domain.SKIPPED, due_at=None,
                               error={"code": reason, "detail": _SKIP_REASONS[reason]})
                messages.append(message)
                continue
            content = self._render(site_id, kind, recipient, data, details, quiet.timezone)
            content["to"] = recipient.address(channel)
            go = domain.not_before(start, channel, recipient.recipient_kind,
                                   recipient.urgent, quiet)
            status = (domain.DEFERRED if go > start else
                      domain.SCHEDULED if start > now else domain.QUEUED)
            message.update(status=status, due_at=go, content=self.cipher.encrypt(
                site_id, f"message:{message_id}:content", content))
            messages.append(message)
        return messages

    def _render(self, site_id, kind, recipient, data, details, zone):
        context = domain.template_context(kind, recipient, data, details, zone)
        template, source = self._template_for(site_id, kind, recipient.recipient_kind,
                                              recipient.language)
        try:
            return templates.render(template, context)
        except Exception as error:   # checked when saved: should not happen
            log.warning("site template failed; using the default", extra=log_fields(
                site_id=site_id, kind=kind, source=source, error=type(error).__name__))
            return templates.render(templates.default_template(
                kind, recipient.recipient_kind), context)

    def _template_for(self, site_id, kind, audience, language):
        """The site's template in the person's language, else in its main
        language (``pa`` for ``pa-IN``), else the site's English, else the default."""
        saved = store.Templates(self.db, site_id)
        for candidate in dict.fromkeys((language, language.split("-")[0], "en")):
            template = saved.get(kind, audience, candidate)
            if template is not None:
                return template, f"site:{candidate}"
        return templates.default_template(kind, audience), "default"

    def _template_key(self, kind, audience, language):
        key = load_or_fail(TemplateKeySchema(), {"kind": kind, "audience": audience,
                                                 "language": language})
        if key["audience"] not in domain.AUDIENCES[key["kind"]]:
            raise NotFound(f"No {kind} message goes to a {audience}.")
        return key["kind"], key["audience"], key["language"]

    @staticmethod
    def _template_view(kind, audience, language, saved):
        parts = saved or templates.default_template(kind, audience)
        return dict({part: parts.get(part) for part in templates.PARTS},
                    kind=kind, audience=audience, language=language,
                    source="site" if saved else "default",
                    variables=sorted(templates.SAMPLES[kind]),
                    updated_at=(saved or {}).get("updated_at"),
                    updated_by=(saved or {}).get("updated_by"))

    # -- sending ------------------------------------------------------------------------

    def _dispatch(self, now):
        counts = {"attempted": 0, "sent": 0, "retrying": 0, "deferred": 0, "failed": 0}
        lease = float(self._settings()["CLAIM_SECONDS"])
        for _ in range(DISPATCH_BATCH):
            message = store.claim_due(self.db, now, lease)
            if message is None:
                break
            counts["attempted"] += 1
            counts[self._deliver(message, now)] += 1
        return counts

    def _deliver(self, message, now):
        settings = self._settings()
        site_id, message_id = message["site_id"], message["_id"]
        channel, kind = message["channel"], message["kind"]
        messages = store.Messages(self.db, site_id)
        go = domain.not_before(now, channel, message["recipient_kind"], message["urgent"],
                               self._quiet_hours(site_id))
        if go > now:   # came due (a retry, say) inside quiet hours
            messages.settle(message_id, {"status": domain.DEFERRED, "due_at": go})
            return "deferred"
        attempts = message["attempts"] + 1
        try:
            content = self.cipher.decrypt(site_id, f"message:{message_id}:content",
                                          message["content"])
            reference = self.channels.send(channel, content["to"], content, message_id)
        except DeliveryFailed as failure:
            return self._failed(messages, message, now, attempts, failure, settings)
        except Exception as error:   # a fault here, not the channel's: retry it too
            log.exception("sending failed unexpectedly")
            failure = DeliveryFailed("internal_error", type(error).__name__, True)
            return self._failed(messages, message, now, attempts, failure, settings)
        event = self._event("message.sent", message, now, sent_at=now.isoformat())
        if messages.settle(message_id, {
                "status": domain.SENT, "sent_at": now, "attempts": attempts,
                "due_at": None, "content": None, "error": None,
                "provider_reference": reference}, [event]) is None:
            log.warning("a message was sent after its claim lapsed", extra=log_fields(
                message_id=message_id))
        self.channels.count("sent", channel, kind)
        log.info("message sent", extra=log_fields(
            message_id=message_id, kind=kind, channel=channel, attempts=attempts))
        return "sent"

    def _failed(self, messages, message, now, attempts, failure, settings):
        status, due = domain.after_failure(
            attempts, int(settings["MAX_ATTEMPTS"]), failure.transient, now,
            settings["RETRY_DELAYS_SECONDS"])
        error = {"code": failure.code, "detail": failure.detail}
        fields = log_fields(message_id=message["_id"], kind=message["kind"],
                            channel=message["channel"], attempts=attempts,
                            error=failure.code, transient=failure.transient)
        if status == domain.RETRYING:
            messages.settle(message["_id"], {"status": status, "due_at": due,
                                             "attempts": attempts, "error": error})
            log.warning("message not sent; will retry", extra=fields)
            return "retrying"
        event = self._event("message.failed", message, now, error_code=failure.code,
                            attempts=attempts, failed_at=now.isoformat())
        messages.settle(message["_id"], {
            "status": domain.FAILED, "due_at": None, "attempts": attempts, "error": error,
            "failed_at": now, "content": None}, [event])
        self.channels.count("failed", message["channel"], message["kind"])
        log.error("message failed", extra=fields)
        return "failed"

    @staticmethod
    def _event(event_type, message, now, **facts):
        return new_event(event_type, dict(
            facts, message_id=message["_id"], kind=message["kind"],
            channel=message["channel"], recipient_kind=message["recipient_kind"],
            cause_event_id=message.get("cause_event_id")),
            site_id=message["site_id"], now=now, subject=message["_id"],
            correlation_id=message.get("correlation_id"),
            causation_id=message.get("cause_event_id"))


_SKIP_REASONS = {
    domain.OPTED_OUT: "The person opted out of every channel they can be reached on.",
    domain.NO_CONTACT_DETAILS: "No email address or phone number is known.",
    domain.NO_CHANNEL: "No channel for their contact details is set up here.",
}
