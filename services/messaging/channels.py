"""Where messages leave: email over SMTP, SMS (and email) through GOV.UK
Notify, and the delivery counters.

Each sender raises :class:`DeliveryFailed` with ``transient`` set when a
later attempt may succeed (SMTP connection refused or 4xx; Notify 429, 5xx
or unreachable) and unset when it cannot (SMTP 5xx; Notify 400: a bad
number or address). Error details never carry the recipient's address.

GOV.UK Notify sends through templates of its own: set up one SMS template
whose message is ``((body))`` and one email template with subject
``((subject))`` and message ``((body))``, and give their ids in config;
Alongside renders the words itself (its templates, per site and language).
"""
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import make_msgid

from nameko.extensions import DependencyProvider
from notifications_python_client.errors import APIError
from notifications_python_client.notifications import NotificationsAPIClient
from prometheus_client import Counter

from services.messaging.domain import EMAIL, SMS


class DeliveryFailed(Exception):
    def __init__(self, code, detail, transient):
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail[:300]
        self.transient = transient


def _redact(text, address):
    text = str(text)
    return text.replace(address, "<recipient>") if address else text


class SmtpEmail:
    def __init__(self, settings):
        self.host = settings.get("HOST") or ""
        self.port = int(settings.get("PORT") or 25)
        self.security = (settings.get("SECURITY") or "none").lower()
        self.username = settings.get("USERNAME") or None
        self.password = settings.get("PASSWORD") or None
        self.sender = settings.get("FROM") or "Alongside <no-reply@alongside.invalid>"
        self.timeout = float(settings.get("TIMEOUT_SECONDS") or 10)
        if self.security not in ("none", "starttls", "ssl"):
            raise RuntimeError("SMTP.SECURITY must be none, starttls or ssl")

    @property
    def configured(self):
        return bool(self.host)

    def send(self, to, subject, text, html, reference):
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = to
        message["Subject"] = subject
        message["Message-ID"] = make_msgid(idstring=reference)
        message["X-Alongside-Message-Id"] = reference
        message.set_content(text)
        if html:
            message.add_alternative(html, subtype="html")
        try:
            if self.security == "ssl":
                connection = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout,
                                              context=ssl.create_default_context())
            else:
                connection = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with connection as smtp:
                if self.security == "starttls":
                    smtp.starttls(context=ssl.create_default_context())
                if self.username:
                    smtp.login(self.username, self.password or "")
                smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as error:
            code, reply = next(iter(error.recipients.values()))
            raise DeliveryFailed(f"smtp_{code}", _redact(_text(reply), to), 400 <= code < 500)
        except smtplib.SMTPAuthenticationError as error:
            # The service's account, not the message: worth retrying once fixed.
            raise DeliveryFailed("smtp_auth", _text(error.smtp_error), True)
        except smtplib.SMTPResponseException as error:
            raise DeliveryFailed(f"smtp_{error.smtp_code}",
                                 _redact(_text(error.smtp_error), to),
                                 not 500 <= error.smtp_code < 600)
        except (OSError, smtplib.SMTPException) as error:
            raise DeliveryFailed("smtp_unavailable", _redact(
                f"{type(error).__name__}: {error}", to), True)
        return message["Message-ID"]


def _text(reply):
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


class Notify:
    """GOV.UK Notify through its official client (a new client per call:
    the client is not safe to share between green threads)."""

    def __init__(self, settings):
        self.api_key = settings.get("API_KEY") or ""
        self.base_url = settings.get("BASE_URL") or "https://api.notifications.service.gov.uk"
        self.sms_template_id = settings.get("SMS_TEMPLATE_ID") or ""
        self.email_template_id = settings.get("EMAIL_TEMPLATE_ID") or ""
        self.timeout = float(settings.get("TIMEOUT_SECONDS") or 10)

    @property
    def sms_configured(self):
        return bool(self.api_key and self.sms_template_id)

    @property
    def email_configured(self):
        return bool(self.api_key and self.email_template_id)

    def _client(self):
        return NotificationsAPIClient(self.api_key, base_url=self.base_url,
                                      timeout=self.timeout)

    def send_sms(self, to, body, reference):
        return self._call(to, lambda client: client.send_sms_notification(
            phone_number=to, template_id=self.sms_template_id,
            personalisation={"body": body}, reference=reference))

    def send_email(self, to, subject, body, reference):
        return self._call(to, lambda client: client.send_email_notification(
            email_address=to, template_id=self.email_template_id,
            personalisation={"subject": subject, "body": body}, reference=reference))

    def _call(self, to, send):
        try:
            answer = send(self._client())
        except APIError as error:
            status = error.status_code
            transient = status == 429 or status >= 500
            raise DeliveryFailed(f"notify_{status}", _redact(error.message, to), transient)
        return (answer or {}).get("id")


class Channels(DependencyProvider):
    """The configured senders (config ``SMTP``, ``NOTIFY`` and
    ``MESSAGING.EMAIL_PROVIDER``: smtp or notify) and the counters
    ``alongside_messages_sent_total`` / ``_failed_total`` by channel and kind."""

    def setup(self):
        config = self.container.config
        settings = config.get("MESSAGING", {}) or {}
        self.email_provider = (settings.get("EMAIL_PROVIDER") or "smtp").lower()
        self.smtp = SmtpEmail(config.get("SMTP", {}) or {})
        self.notify = Notify(config.get("NOTIFY", {}) or {})
        self.sent = self.failed = None

    def register_metrics(self, metrics):
        self.sent = Counter("alongside_messages_sent_total",
                            "Messages handed to their channel, by channel and kind",
                            ["channel", "kind"], registry=metrics.registry)
        self.failed = Counter("alongside_messages_failed_total",
                              "Messages that failed for good, by channel and kind",
                              ["channel", "kind"], registry=metrics.registry)

    def get_dependency(self, worker_ctx):
        return self

    @property
    def available(self):
        channels = set()
        if (self.smtp.configured if self.email_provider == "smtp"
                else self.notify.email_configured):
            channels.add(EMAIL)
        if self.notify.sms_configured:
            channels.add(SMS)
        return channels

    def send(self, channel, to, content, reference):
        """Hand one message to its channel; the provider's reference."""
        if channel == SMS:
            return self.notify.send_sms(to, content["sms"], reference)
        if self.email_provider == "notify":
            return self.notify.send_email(to, content["subject"], content["text"], reference)
        return self.smtp.send(to, content["subject"], content["text"], content.get("html"),
                              reference)

    def count(self, outcome, channel, kind):
        counter = self.sent if outcome == "sent" else self.failed
        if counter is not None:
            counter.labels(channel, kind).inc()
