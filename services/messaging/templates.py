"""Message templates: the English defaults shipped with the code, and
sandboxed rendering.

A template has a ``subject`` and ``text`` (email), an optional ``html``
(email, autoescaped) and ``sms``. Templates are Jinja2, rendered in a
:class:`~jinja2.sandbox.SandboxedEnvironment` with ``StrictUndefined``: a
coordinator's template can read the variables its kind offers and nothing
else (no attribute of Python internals, no unknown name).
"""
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from services.messaging import domain

PARTS = ("subject", "text", "html", "sms")
SMS_MAX_CHARS = 918     # GOV.UK Notify's limit for one text message
SUBJECT_MAX_CHARS = 200

_plain = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False,
                              keep_trailing_newline=False)
_html = SandboxedEnvironment(undefined=StrictUndefined, autoescape=True)

_SIGN_OFF = "\n\nAlongside"

DEFAULTS = {
    (domain.REFERRAL_RECEIVED, domain.REFERRER): {
        "subject": "Referral received ({{ reference }})",
        "text": "Dear {{ recipient_name or 'colleague' }},\n\nThank you for referring "
                "{{ parent_name }} to Alongside on {{ received_on }}. A coordinator will "
                "look at the referral soon and contact the parent. Please quote "
                "{{ reference }} if you need to get in touch." + _SIGN_OFF,
        "sms": "Alongside: thank you, we received your referral ({{ reference }}) and a "
               "coordinator will be in touch with the parent soon.",
    },
    (domain.REFERRAL_RECEIVED, domain.PARENT): {
        "subject": "We have received your referral to Alongside",
        "text": "Dear {{ recipient_name }},\n\nWe have received your referral to "
                "Alongside. A coordinator will contact you soon to talk about the "
                "support you would like. Your reference is {{ reference }}." + _SIGN_OFF,
        "sms": "Alongside: hello {{ recipient_name }}, we have received your referral "
               "({{ reference }}). A coordinator will contact you soon.",
    },
    (domain.MATCH_PROPOSED, domain.VOLUNTEER): {
        "subject": "A family you could support ({{ reference }})",
        "text": "Dear {{ recipient_name }},\n\nYour coordinator would like to match you "
                "with a family ({{ reference }}). Please log in to Alongside to see the "
                "details and let them know whether you can support them." + _SIGN_OFF,
        "sms": "Alongside: your coordinator has proposed a new family for you "
               "({{ reference }}). Please log in to reply.",
    },
    (domain.MATCH_PROPOSED, domain.PARENT): {
        "subject": "We are finding a volunteer for you",
        "text": "Dear {{ recipient_name }},\n\nWe think we have found a volunteer who "
                "could support you, and we are checking with them now. We will be in "
                "touch again when it is confirmed." + _SIGN_OFF,
        "sms": "Alongside: hello {{ recipient_name }}, we think we have found a "
               "volunteer for you and will confirm soon.",
    },
    (domain.MATCH_CONFIRMED, domain.VOLUNTEER): {
        # Subjects show on lock screens and in inbox lists: no parent's name.
        "subject": "You have been matched with a family ({{ reference }})",
        "text": "Dear {{ recipient_name }},\n\nYou have been matched with "
                "{{ parent_name }} ({{ reference }}). Your coordinator will share how "
                "to get in touch for your first contact." + _SIGN_OFF,
        "sms": "Alongside: you have been matched with {{ parent_name }} "
               "({{ reference }}). Your coordinator will be in touch.",
    },
    (domain.MATCH_CONFIRMED, domain.PARENT): {
        "subject": "Meet your Alongside volunteer",
        "text": "Dear {{ recipient_name }},\n\nWe have matched you with "
                "{{ volunteer_name }}, a trained Alongside volunteer. They will "
                "contact you soon to arrange a first meeting." + _SIGN_OFF,
        "sms": "Alongside: hello {{ recipient_name }}, your volunteer is "
               "{{ volunteer_name }}. They will contact you soon.",
    },
    (domain.SAFEGUARDING_CONCERN, domain.COORDINATOR): {
        "subject": "URGENT: safeguarding concern ({{ severity }}) {{ reference }}",
        "text": "Dear {{ recipient_name }},\n\nA safeguarding concern of severity "
                "{{ severity }} was raised on referral {{ referral_reference }} "
                "(concern {{ reference }}). Please log in to Alongside and acknowledge "
                "it now." + _SIGN_OFF,
        "sms": "Alongside URGENT: safeguarding concern ({{ severity }}) on referral "
               "{{ referral_reference }}. Please log in and acknowledge it now.",
    },
    (domain.DBS_EXPIRING, domain.VOLUNTEER): {
        "subject": "Your DBS check needs renewing by {{ expires_on }}",
        "text": "Dear {{ recipient_name }},\n\nYour DBS check needs renewing before "
                "{{ expires_on }} so that you can keep supporting families. Your "
                "coordinator can help you apply." + _SIGN_OFF,
        "sms": "Alongside: your DBS check needs renewing before {{ expires_on }}. "
               "Please speak to your coordinator.",
    },
    (domain.DBS_EXPIRING, domain.COORDINATOR): {
        "subject": "DBS check expiring: {{ volunteer_name }} ({{ expires_on }})",
        "text": "Dear {{ recipient_name }},\n\nThe DBS check of {{ volunteer_name }} "
                "stops being current on {{ expires_on }}. Please arrange its "
                "renewal." + _SIGN_OFF,
        "sms": "Alongside: the DBS check of {{ volunteer_name }} stops being current "
               "on {{ expires_on }}.",
    },
    (domain.CONTACT_REMINDER, domain.VOLUNTEER): {
        "subject": "Reminder: {{ mode or 'contact' }} tomorrow",
        "text": "Dear {{ recipient_name }},\n\nA reminder of your {{ mode or 'contact' }} "
                "with {{ parent_name }} on {{ contact_at }}." + _SIGN_OFF,
        "sms": "Alongside reminder: {{ mode or 'contact' }} with {{ parent_name }} on "
               "{{ contact_at }}.",
    },
    (domain.CONTACT_REMINDER, domain.PARENT): {
        "subject": "Reminder: {{ volunteer_name }} will see you tomorrow",
        "text": "Dear {{ recipient_name }},\n\nA reminder that {{ volunteer_name }} "
                "will be in touch ({{ mode or 'contact' }}) on {{ contact_at }}."
                + _SIGN_OFF,
        "sms": "Alongside reminder: {{ volunteer_name }} will be in touch on "
               "{{ contact_at }}.",
    },
}

# Sample values a template is checked with when it is saved: the same
# names the real context has (domain.template_context), so an unknown
# variable is refused at once rather than at sending time.
_COMMON = {"recipient_name": "Alex Example", "recipient_kind": ""}
SAMPLES = {
    domain.REFERRAL_RECEIVED: dict(_COMMON, parent_name="Alex Example", reference="1A2B3C4D",
                                   received_on="2 November 2026"),
    domain.MATCH_PROPOSED: dict(_COMMON, parent_name="Alex Example",
                                volunteer_name="Sam Example", reference="1A2B3C4D"),
    domain.MATCH_CONFIRMED: dict(_COMMON, parent_name="Alex Example",
                                 volunteer_name="Sam Example", reference="1A2B3C4D"),
    domain.SAFEGUARDING_CONCERN: dict(_COMMON, severity="urgent", reference="1A2B3C4D",
                                      referral_reference="5E6F7A8B"),
    domain.DBS_EXPIRING: dict(_COMMON, volunteer_name="Sam Example",
                              expires_on="1 December 2026"),
    domain.CONTACT_REMINDER: dict(_COMMON, parent_name="Alex Example",
                                  volunteer_name="Sam Example",
                                  contact_at="Monday 23 November at 10:00",
                                  mode="home visit"),
}


def default_template(kind, audience):
    return dict(DEFAULTS[(kind, audience)], html=None)


def render(template, context):
    """``{"subject", "text", "html", "sms"}`` rendered; raises
    :class:`jinja2.TemplateError` (SecurityError and UndefinedError among
    them) if a part cannot be."""
    rendered = {}
    for part in PARTS:
        source = template.get(part)
        if source is None:
            rendered[part] = None
            continue
        environment = _html if part == "html" else _plain
        rendered[part] = environment.from_string(source).render(context)
    rendered["subject"] = " ".join((rendered["subject"] or "").split())
    return rendered


def check(template, kind):
    """Field errors of a template (empty if it renders): each part is
    rendered with the kind's sample variables."""
    errors = {}
    context = SAMPLES[kind]
    for part in PARTS:
        source = template.get(part)
        if source is None:
            continue
        environment = _html if part == "html" else _plain
        try:
            text = environment.from_string(source).render(context)
        except TemplateError as error:
            errors[part] = [f"Cannot be rendered: {type(error).__name__}: {error}"]
            continue
        except Exception as error:   # e.g. a filter given the wrong type
            errors[part] = [f"Cannot be rendered: {type(error).__name__}"]
            continue
        if part == "sms" and len(text) > SMS_MAX_CHARS:
            errors[part] = [f"Renders longer than {SMS_MAX_CHARS} characters."]
        if part == "subject" and len(text) > SUBJECT_MAX_CHARS:
            errors[part] = [f"Renders longer than {SUBJECT_MAX_CHARS} characters."]
    return errors
