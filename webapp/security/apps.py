from django.apps import AppConfig


class SecurityConfig(AppConfig):
    name = "webapp.security"
    label = "security"
    verbose_name = "Access and limits"
