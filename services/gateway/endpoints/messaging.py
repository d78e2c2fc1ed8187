"""Messaging: templates, preferences, the delivery log and webhooks, forwarded to the messaging service."""


class MessagingEndpoints:
    pass
