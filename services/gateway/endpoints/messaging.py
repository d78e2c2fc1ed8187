"""Messaging: templates, preferences, the delivery log, quiet hours and
contact reminders: checked here with the messaging service's own schemas,
then forwarded to it over RPC with the caller's site. (Webhooks have their
own endpoints.)"""
from services.gateway import domain
from services.gateway.api import endpoint
from services.messaging.schemas import (MessageSchema, MessagesQuerySchema,
                                        NewReminderSchema, PreferencesOutSchema,
                                        PreferencesSchema, ReminderSchema,
                                        SettingsOutSchema, SettingsSchema,
                                        TemplateOutSchema, TemplateSchema)

TEMPLATE = "/api/v1/message-templates/<kind>/<audience>/<language>"
PREFERENCES = "/api/v1/messaging-preferences/<recipient_kind>/<person_id>"


class MessagingEndpoints:
    # -- templates ---------------------------------------------------------------

    @endpoint("GET", "/api/v1/message-templates",
              summary="Every message template in force at the site (its own or the default)",
              permission="messaging:manage", response=TemplateOutSchema, many=True,
              forwarded=True)
    def list_message_templates(self, call):
        return self.messaging.list_templates(domain.site_scope(call.principal))

    @endpoint("GET", TEMPLATE,
              summary="A message template (kind, audience, language), with its variables",
              permission="messaging:manage", response=TemplateOutSchema, forwarded=True,
              errors=(404, 422))
    def get_message_template(self, call, kind, audience, language):
        return self.messaging.get_template(domain.site_scope(call.principal), kind,
                                           audience, language)

    @endpoint("PUT", TEMPLATE,
              summary="Set the site's template (Jinja2, sandboxed; refused if it cannot "
                      "be rendered)",
              permission="messaging:manage", body=TemplateSchema,
              response=TemplateOutSchema, forwarded=True,
              audit=("message_template.update", "message_template"), errors=(404, 422))
    def put_message_template(self, call, kind, audience, language):
        return self.messaging.put_template(domain.site_scope(call.principal), kind,
                                           audience, language,
                                           TemplateSchema().dump(call.body), call.principal.id)

    @endpoint("DELETE", TEMPLATE, summary="Go back to the default template", status=204,
              permission="messaging:manage", forwarded=True,
              audit=("message_template.delete", "message_template"), errors=(404, 422))
    def delete_message_template(self, call, kind, audience, language):
        return self.messaging.delete_template(domain.site_scope(call.principal), kind,
                                              audience, language)

    # -- preferences ---------------------------------------------------------------

    @endpoint("GET", PREFERENCES,
              summary="A person's messaging preferences (parent and referrer: by "
                      "referral id; volunteer: volunteer id; coordinator: user id)",
              permission="messaging:manage", response=PreferencesOutSchema,
              forwarded=True, errors=(422,))
    def get_messaging_preferences(self, call, recipient_kind, person_id):
        return self.messaging.get_preferences(domain.site_scope(call.principal),
                                              recipient_kind, person_id)

    @endpoint("PUT", PREFERENCES,
              summary="Set a person's preferred channel and opt-outs",
              permission="messaging:manage", body=PreferencesSchema,
              response=PreferencesOutSchema, forwarded=True,
              audit=("messaging_preferences.update", "messaging_preferences"),
              errors=(422,))
    def put_messaging_preferences(self, call, recipient_kind, person_id):
        return self.messaging.put_preferences(domain.site_scope(call.principal),
                                              recipient_kind, person_id,
                                              PreferencesSchema().dump(call.body))

    # -- the delivery log and settings ------------------------------------------------

    @endpoint("GET", "/api/v1/messages",
              summary="The delivery log, newest first: kind, channel, recipient kind, "
                      "status, attempts, times and error (never the content)",
              permission="messaging:manage", query=MessagesQuerySchema,
              response=MessageSchema, many=True, forwarded=True)
    def list_messages(self, call):
        return self.messaging.list_messages(domain.site_scope(call.principal),
                                            MessagesQuerySchema().dump(call.query))

    @endpoint("GET", "/api/v1/messaging-settings",
              summary="The site's quiet hours (no SMS then, except urgent to staff)",
              permission="messaging:manage", response=SettingsOutSchema, forwarded=True)
    def get_messaging_settings(self, call):
        return self.messaging.get_settings(domain.site_scope(call.principal))

    @endpoint("PUT", "/api/v1/messaging-settings", summary="Set the site's quiet hours",
              permission="messaging:manage", body=SettingsSchema,
              response=SettingsOutSchema, forwarded=True,
              audit=("messaging_settings.update", "site"))
    def put_messaging_settings(self, call):
        return self.messaging.put_settings(domain.site_scope(call.principal),
                                           SettingsSchema().dump(call.body), call.principal.id)

    # -- contact reminders --------------------------------------------------------------

    @endpoint("POST", "/api/v1/contact-reminders",
              summary="Remind the volunteer and the parent of a planned contact the day "
                      "before it", status=201, permission="journeys:write",
              body=NewReminderSchema, response=ReminderSchema, forwarded=True,
              audit=("contact_reminder.create", "contact_reminder"), errors=(404, 422))
    def create_contact_reminder(self, call):
        return self.messaging.schedule_contact_reminder(
            domain.site_scope(call.principal), NewReminderSchema().dump(call.body),
            call.principal.id)

    @endpoint("DELETE", "/api/v1/contact-reminders/<id>",
              summary="Cancel a contact reminder not yet sent", status=204,
              permission="journeys:write", forwarded=True,
              audit=("contact_reminder.cancel", "contact_reminder"), errors=(404,))
    def cancel_contact_reminder(self, call, id):
        return self.messaging.cancel_contact_reminder(domain.site_scope(call.principal), id)
