import shlex
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.utils import timezone

from webapp.security.models import ApiToken


class Command(BaseCommand):
    help = (
        "Create USERNAME if needed (without a password: set one with `manage.py changepassword USERNAME`), "
        "give them a new API token and print only its key on stdout (notes go to stderr). "
        "Each run makes another token; revoke old ones on the Tokens page or with DELETE /api/tokens/{id}/."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="manage.py create_api_token", help="what the token is for")
        parser.add_argument("--expires-in-days", type=int, default=None, help="default: never expires")

    def handle(self, username, name, expires_in_days, **options):
        if expires_in_days is not None and expires_in_days < 1:
            raise CommandError("--expires-in-days must be 1 or more")
        User = get_user_model()
        if User._meta.db_table not in connection.introspection.table_names():
            raise CommandError("the database has no tables yet: run `make migrate` (or `make up`) first")
        if not User.objects.filter(username=username).exists():
            _check_new_username(User, username)
        user, created = User.objects.get_or_create(username=username)
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        expires_at = timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None
        _, key = ApiToken.objects.issue(user, name, expires_at)
        # Notes on stderr, only the key on stdout, so scripts can do TOKEN=$(... create_api_token bob).
        if created:
            self.stderr.write(
                f"Created user {username!r} without a password; to log in to the web UI, set one with "
                f"`python manage.py changepassword {shlex.quote(username)}`."
            )
        self.stdout.write(key)


def _check_new_username(User, username: str) -> None:
    """The rules the sign-up form applies (length, characters), so every account could have signed up."""
    field = User._meta.get_field(User.USERNAME_FIELD)
    try:
        field.clean(username, None)
    except ValidationError as error:
        raise CommandError(f"cannot create user {username!r}: {' '.join(error.messages)}") from None
