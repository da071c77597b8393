"""Shapes of the API's own error bodies, for the OpenAPI schema only (nothing validates with
them): the views build these bodies themselves."""

from __future__ import annotations

from drf_spectacular.utils import PolymorphicProxySerializer
from rest_framework import serializers


def one_or_list(component_name: str, serializer: type[serializers.Serializer]):
    """A bulk endpoint's body: one object, or a list of them."""
    return PolymorphicProxySerializer(
        component_name=component_name,
        serializers=[serializer, serializer(many=True)],
        resource_type_field_name=None,
        many=False,
    )


class DetailSerializer(serializers.Serializer):
    detail = serializers.CharField()


class WeComFailureSerializer(serializers.Serializer):
    """WeCom refused or failed: 400 when the request is at fault (its errcode says why), 502
    when WeCom itself is."""

    detail = serializers.CharField()
    errcode = serializers.IntegerField(allow_null=True)


class RowErrorSerializer(serializers.Serializer):
    row = serializers.IntegerField(
        allow_null=True, help_text="0-based index in the list sent; null: the request as a whole"
    )
    field = serializers.CharField(help_text="the field at fault, or non_field_errors")
    message = serializers.CharField()


class RowErrorsSerializer(serializers.Serializer):
    """A bulk request was refused whole: nothing was written."""

    errors = RowErrorSerializer(many=True)
