from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from rest_framework.authtoken.models import Token


class Command(BaseCommand):
    help = "Create USERNAME if needed (without a password) and print only their API token."

    def add_arguments(self, parser):
        parser.add_argument("username")

    def handle(self, username, **options):
        user, created = get_user_model().objects.get_or_create(username=username)
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        token, _ = Token.objects.get_or_create(user=user)
        # Only the token on stdout, so scripts can do TOKEN=$(... create_api_token bob).
        self.stdout.write(token.key)
