"""Template rendering: the defaults, the sandbox, and the checks on saving."""
import pytest
from jinja2.exceptions import SecurityError, UndefinedError

from services.messaging import domain, templates


@pytest.mark.parametrize("key", sorted(templates.DEFAULTS))
def test_every_default_renders_with_its_kinds_variables(key):
    kind, audience = key
    template = templates.default_template(kind, audience)
    assert templates.check(template, kind) == {}
    rendered = templates.render(template, templates.SAMPLES[kind])
    assert rendered["subject"] and rendered["text"] and rendered["sms"]
    assert "{{" not in rendered["text"] and len(rendered["sms"]) <= 160 * 2


def test_there_is_a_default_for_every_kind_and_audience():
    assert set(templates.DEFAULTS) == {(kind, audience) for kind, audiences
                                       in domain.AUDIENCES.items() for audience in audiences}


def test_a_render_fills_in_the_variables_and_folds_the_subject_onto_one_line():
    rendered = templates.render({"subject": "Hello\n{{ recipient_name }}",
                                 "text": "Dear {{ recipient_name }}", "sms": "Hi",
                                 "html": None}, {"recipient_name": "Alex"})
    assert rendered == {"subject": "Hello Alex", "text": "Dear Alex", "sms": "Hi",
                        "html": None}


def test_html_is_autoescaped_and_text_is_not():
    context = {"recipient_name": "<script>alert(1)</script> & co"}
    rendered = templates.render({"subject": "s", "text": "{{ recipient_name }}",
                                 "sms": "{{ recipient_name }}",
                                 "html": "<p>{{ recipient_name }}</p>"}, context)
    assert rendered["html"] == "<p>&lt;script&gt;alert(1)&lt;/script&gt; &amp; co</p>"
    assert rendered["text"] == context["recipient_name"]


@pytest.mark.parametrize("source", [
    "{{ recipient_name.__class__ }}",
    "{{ recipient_name.__class__.__mro__[1].__subclasses__() }}",
    "{{ ''.__class__.__base__ }}",
    "{{ cycler.__init__.__globals__ }}",
])
def test_the_sandbox_refuses_python_internals(source):
    with pytest.raises((SecurityError, UndefinedError)):
        templates.render({"subject": "s", "text": source, "sms": "x"},
                         {"recipient_name": "Alex"})
    errors = templates.check({"subject": "s", "text": source, "sms": "x"},
                             domain.REFERRAL_RECEIVED)
    assert list(errors) == ["text"]


def test_an_unknown_variable_and_bad_syntax_are_refused_naming_the_part():
    errors = templates.check({"subject": "Hello {{ nickname }}", "text": "{% if %}",
                              "sms": "fine {{ reference }}",
                              "html": "<p>{{ recipient_name }}</p>"},
                             domain.REFERRAL_RECEIVED)
    assert set(errors) == {"subject", "text"}
    assert "nickname" in errors["subject"][0]
    assert "TemplateSyntaxError" in errors["text"][0]


def test_a_variable_of_another_kind_is_unknown():
    errors = templates.check({"subject": "{{ expires_on }}", "text": "t", "sms": "s"},
                             domain.REFERRAL_RECEIVED)
    assert "expires_on" in errors["subject"][0]


def test_an_sms_too_long_is_refused():
    errors = templates.check({"subject": "s", "text": "t",
                              "sms": "{% for i in range(100) %}0123456789{% endfor %}"},
                             domain.REFERRAL_RECEIVED)
    assert list(errors) == ["sms"]
