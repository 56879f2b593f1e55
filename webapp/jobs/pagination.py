from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination

from webapp.jobs.params import MAX_ID, whole_number


class Pagination(PageNumberPagination):
    """?page=N&page_size=M (at most 500) on every list in the API."""

    page_size_query_param = "page_size"
    max_page_size = 500
    last_page_strings = ()  # page is a number, nothing else

    # DRF quietly falls back to defaults on a malformed page or page_size; a
    # client that sent one should hear that it was wrong instead.
    def get_page_number(self, request, paginator):
        return _whole_number(request, self.page_query_param, "a whole number from 1") or 1

    def get_page_size(self, request):
        size = _whole_number(
            request, self.page_size_query_param, f"a whole number from 1 to {self.max_page_size}",
            highest=self.max_page_size, clamp=True,
        )  # fmt: skip
        return self.page_size if size is None else size

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = 1
            if parameter["name"] == self.page_size_query_param:
                parameter["description"] = f"results per page; more than {self.max_page_size} gives {self.max_page_size}"
        return parameters


def _whole_number(request, name: str, expected: str, highest: int = MAX_ID, clamp: bool = False) -> int | None:
    """The query parameter as a number from 1, None when absent; 400 when malformed."""
    values = request.query_params.getlist(name)
    if not values:
        return None
    number = whole_number(values[0], highest, clamp) if len(values) == 1 else None
    if number is None:
        raise ValidationError({name: [expected]})
    return number
