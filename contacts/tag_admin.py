"""Admin for tags: the tag library (WeCom first, then the mirror), batch tagging of a filtered
customer list with a progress page, and the customer page's tags and timeline (客户动态).

Imported at the end of contacts/admin.py; the customer admin gets its inlines and the batch
action appended here, so that module stays as it is.
"""

from __future__ import annotations

from itertools import groupby
from operator import attrgetter
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import transaction
from django.db.models import Count, Prefetch, Q, QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from contacts.admin import ExternalContactAdmin
from contacts.batch_tagging import batch_tag_job_create, batch_tag_jobs_resume
from contacts.models import (
    BatchTagJob,
    CustomerTag,
    FollowRelation,
    Tag,
    TagGroup,
    TimelineEvent,
)
from contacts.tags import (
    TAG_NAME_MAX_LENGTH,
    TagLibraryError,
    tag_create,
    tag_group_create,
    tag_library_sync,
    tag_rename,
    tags_delete,
)
from scrm import days
from scrm.wecom import tenancy
from scrm.wecom.admin import local_time_column
from scrm.wecom.admin_tenancy import WRITE, CorpScopedAdmin, CorpScopedInline
from scrm.wecom.client import WeComError
from scrm.wecom.models import Corp

# WeCom sorts by `order` in [0, 2^32), bigger first.
ORDER_VALIDATORS = [MinValueValidator(0), MaxValueValidator(2**32 - 1)]
# Timeline lines on the customer's page; the API pages through all of them.
TIMELINE_ROWS = 100


# -- the tag library ---------------------------------------------------------------------------


@admin.action(permissions=["delete"], description=django_delete_selected.short_description)
def delete_selected(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> Any:
    """Django's delete action, WeCom first: a refusal is shown and nothing is deleted (rather
    than a server error, or "Successfully deleted")."""
    try:
        with transaction.atomic():
            return django_delete_selected(modeladmin, request, queryset)
    except TagLibraryError as exc:
        modeladmin.message_user(request, exc.message, messages.ERROR)
        return None


class WeComFirstAdmin(CorpScopedAdmin):
    """Saves and deletes go to WeCom first (the services), then the mirror. When WeCom refuses,
    the admin's transaction is rolled back and the form comes back with WeCom's reason."""

    actions = [delete_selected]
    change_list_template = "admin/contacts/tags/change_list.html"

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        refusal = getattr(request, "wecom_refusal", None)
        if refusal is None:
            return form

        class RefusedForm(form):
            def clean(self) -> dict[str, Any]:
                super().clean()
                raise ValidationError(refusal)

        return RefusedForm

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except TagLibraryError as exc:
            request.wecom_refusal = exc.message  # the second pass shows the form with it
            return super().changeform_view(request, object_id, form_url, extra_context)

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: dict | None = None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except TagLibraryError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return HttpResponseRedirect(request.path)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> tuple:
        # Nothing is deleted here (the mirror marks rows deleted), and the default would list
        # every tagged customer. Counts say what WeCom takes away.
        pks = [obj.pk for obj in objs]
        by = "pk__in" if self.model is Tag else "group__pk__in"
        tags = Tag.objects.filter(deleted=False, **{by: pks})
        counts = {
            Tag._meta.verbose_name_plural: tags.count(),
            CustomerTag._meta.verbose_name_plural: CustomerTag.objects.filter(tag__in=tags).count(),
        }
        return [str(obj) for obj in objs], counts, set(), []

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_change_permission(request, obj) and not getattr(obj, "deleted", False)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_delete_permission(request, obj) and not getattr(obj, "deleted", False)

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> Any:
        extra = {"has_sync_permission": self.has_change_permission(request)}
        return super().changelist_view(request, {**(extra_context or {}), **extra})

    def _by_corp(self, queryset: QuerySet) -> Any:
        rows = queryset.select_related("corp").order_by("corp_id", "pk")
        return ((corp, list(items)) for corp, items in groupby(rows, key=attrgetter("corp")))


class TagGroupForm(forms.ModelForm):
    new_tags = forms.CharField(
        label=gettext_lazy("new tags"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 30}),
        help_text=gettext_lazy("One tag per line, at most 30 characters each."),
    )

    class Meta:
        model = TagGroup
        fields = ["corp", "name", "order"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "order" in self.fields:
            self.fields["order"].validators += ORDER_VALIDATORS
        if "corp" in self.fields:  # the admin offers the user's corps; of those, the active
            self.fields["corp"].queryset = self.fields["corp"].queryset.filter(is_active=True)

    def clean_new_tags(self) -> list[str]:
        lines = self.cleaned_data["new_tags"].splitlines()
        names = list(dict.fromkeys(line.strip() for line in lines if line.strip()))
        too_long = [name for name in names if len(name) > TAG_NAME_MAX_LENGTH]
        if too_long:
            message = _("Tags of more than 30 characters: %(names)s")
            raise ValidationError(message % {"names": "、".join(too_long)})
        return names

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.instance.pk is None and not data.get("new_tags") and "new_tags" not in self.errors:
            message = _("A tag group needs at least one tag: WeCom keeps no empty groups.")
            self.add_error("new_tags", message)
        return data


class TagInline(CorpScopedInline, admin.TabularInline):
    model = Tag
    fields = ["name", "order", "tag_id", "deleted"]
    readonly_fields = fields
    ordering = ["deleted", "-order", "name"]
    show_change_link = True
    extra = 0

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class TagLibrarySyncForm(forms.Form):
    corp = forms.ModelChoiceField(queryset=Corp.objects.none(), label=gettext_lazy("corp"))

    def __init__(self, *args: Any, corps: QuerySet[Corp], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        corps = corps.filter(is_active=True).order_by("corp_id")
        self.fields["corp"].queryset = corps
        if len(first := list(corps[:2])) == 1:
            self.fields["corp"].initial = first[0].pk


@admin.register(TagGroup)
class TagGroupAdmin(WeComFirstAdmin):
    form = TagGroupForm
    list_display = ["name", "tag_count", "order", "deleted", "corp", "group_id"]
    list_filter = ["deleted", "corp"]
    search_fields = ["name", "group_id"]
    list_select_related = ["corp"]
    inlines = [TagInline]

    def get_inlines(self, request: HttpRequest, obj: TagGroup | None) -> list:
        return [] if obj is None else self.inlines

    def get_queryset(self, request: HttpRequest) -> QuerySet[TagGroup]:
        live = Count("tags", filter=Q(tags__deleted=False))
        return super().get_queryset(request).annotate(tag_count=live)

    def get_fields(self, request: HttpRequest, obj: TagGroup | None = None) -> list[str]:
        if obj is None:
            return ["corp", "name", "order", "new_tags"]
        return ["corp", "group_id", "name", "order", "deleted", "new_tags"]

    def get_readonly_fields(self, request: HttpRequest, obj: TagGroup | None = None) -> list:
        return [] if obj is None else ["corp", "group_id", "deleted"]

    @admin.display(description=gettext_lazy("tags"), ordering="tag_count")
    def tag_count(self, obj: TagGroup) -> int:
        return obj.tag_count

    def save_model(self, request: HttpRequest, obj: TagGroup, form: Any, change: bool) -> None:
        names = form.cleaned_data.get("new_tags") or []
        if not change:
            group = tag_group_create(corp=obj.corp, name=obj.name, tag_names=names, order=obj.order)
            obj.pk, obj.group_id = group.pk, group.group_id
            return
        tag_rename(target=obj, name=obj.name, order=obj.order)
        for name in names:
            tag_create(group=obj, name=name)

    def delete_model(self, request: HttpRequest, obj: TagGroup) -> None:
        tags_delete(corp=obj.corp, groups=[obj])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[TagGroup]) -> None:
        for corp, groups in self._by_corp(queryset):
            tags_delete(corp=corp, groups=groups)

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.sync_view)
        name = f"{self.opts.app_label}_{self.opts.model_name}_sync"
        return [path("sync/", view, name=name), *super().get_urls()]

    def sync_view(self, request: HttpRequest) -> HttpResponse:
        """Mirror the corp's whole tag library from WeCom (get_corp_tag_list)."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        corps = tenancy.corps_for_user(request.user, WRITE)
        form = TagLibrarySyncForm(request.POST or None, corps=corps)
        if request.method == "POST" and form.is_valid():
            corp = form.cleaned_data["corp"]
            try:
                groups, tags = tag_library_sync(corp=corp)
            except WeComError as exc:
                message = _("WeCom did not give the tag library: %(errmsg)s (errcode %(errcode)s).")
                params = {"errmsg": exc.errmsg, "errcode": exc.errcode}
                self.message_user(request, message % params, messages.ERROR)
            else:
                message = _("Tag library synced from WeCom: %(groups)d groups, %(tags)d tags.")
                self.message_user(request, message % {"groups": groups, "tags": tags})
                return HttpResponseRedirect(reverse("admin:contacts_taggroup_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Sync the tag library from WeCom"),
            "form": form,
        }
        return TemplateResponse(request, "admin/contacts/tags/sync.html", context)


class TagForm(forms.ModelForm):
    class Meta:
        model = Tag
        fields = ["group", "name", "order"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "order" in self.fields:
            self.fields["order"].validators += ORDER_VALIDATORS
        if "group" in self.fields:  # the admin offers the user's groups; of those, the live
            groups = self.fields["group"].queryset.filter(deleted=False).select_related("corp")
            self.fields["group"].queryset = groups


@admin.register(Tag)
class TagAdmin(WeComFirstAdmin):
    form = TagForm
    list_display = ["name", "group", "customer_count", "order", "deleted", "corp", "tag_id"]
    list_filter = ["deleted", "corp"]
    search_fields = ["name", "tag_id", "group__name"]
    list_select_related = ["group", "corp"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Tag]:
        return super().get_queryset(request).annotate(customer_count=Count("customer_tags"))

    def get_fields(self, request: HttpRequest, obj: Tag | None = None) -> list[str]:
        if obj is None:
            return ["group", "name", "order"]
        return ["group", "tag_id", "name", "order", "deleted"]

    def get_readonly_fields(self, request: HttpRequest, obj: Tag | None = None) -> list:
        # WeCom cannot move a tag to another group (edit_corp_tag takes a name and an order).
        return [] if obj is None else ["group", "tag_id", "deleted"]

    @admin.display(description=gettext_lazy("tagged follow relations"), ordering="customer_count")
    def customer_count(self, obj: Tag) -> int:
        return obj.customer_count

    def save_model(self, request: HttpRequest, obj: Tag, form: Any, change: bool) -> None:
        if change:
            tag_rename(target=obj, name=obj.name, order=obj.order)
            return
        tag = tag_create(group=obj.group, name=obj.name, order=obj.order)
        obj.pk, obj.corp_id, obj.tag_id = tag.pk, tag.corp_id, tag.tag_id

    def delete_model(self, request: HttpRequest, obj: Tag) -> None:
        tags_delete(corp=obj.corp, tags=[obj])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Tag]) -> None:
        for corp, tags in self._by_corp(queryset):
            tags_delete(corp=corp, tags=tags)


# -- batch tagging -----------------------------------------------------------------------------


def _progress(job: BatchTagJob) -> dict[str, Any]:
    processed = job.done + job.failed
    return {
        "done": job.done,
        "failed": job.failed,
        "total": job.total,
        "processed": processed,
        "percent": processed * 100 // job.total if job.total else 100,
        "running": job.status in (BatchTagJob.Status.PENDING, BatchTagJob.Status.RUNNING),
        "errors": job.errors,
    }


@admin.action(permissions=["resume"], description=gettext_lazy("Resume the selected jobs"))
def resume(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    count = batch_tag_jobs_resume(job_ids=list(queryset.values_list("pk", flat=True)))
    message = _("%(count)d unfinished jobs queued again.")
    modeladmin.message_user(request, message % {"count": count}, messages.SUCCESS)


@admin.register(BatchTagJob)
class BatchTagJobAdmin(CorpScopedAdmin):
    """Jobs are started from the customer list (action); their page shows the progress."""

    list_display = [local_time_column(BatchTagJob, "created_at"), "operation", "progress",
                    "failed", "status", "created_by", "corp"]  # fmt: skip
    list_filter = ["status", "corp"]
    search_fields = ["created_by"]
    list_select_related = ["corp"]
    fields = ["corp", "created_by", "operation", "tag_names", "status", "total", "done", "failed",
              "created_at", "finished_at"]  # fmt: skip
    readonly_fields = fields
    actions = [resume]
    change_form_template = "admin/contacts/tags/batch_tag_job.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_resume_permission(self, request: HttpRequest) -> bool:
        return self.may_write_anywhere(request)

    @admin.display(description=gettext_lazy("operation"), ordering="add")
    def operation(self, obj: BatchTagJob) -> str:
        return _("add tags") if obj.add else _("remove tags")

    @admin.display(description=gettext_lazy("progress"))
    def progress(self, obj: BatchTagJob) -> str:
        info = _progress(obj)
        return f"{info['processed']}/{info['total']} ({info['percent']}%)"

    @admin.display(description=gettext_lazy("tags"))
    def tag_names(self, obj: BatchTagJob) -> str:
        tags = Tag.objects.filter(corp_id=obj.corp_id, tag_id__in=obj.tag_ids).select_related(
            "group"
        )
        return "、".join(str(tag) for tag in tags) or "-"

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        job = self.get_object(request, object_id)
        extra = {"progress": _progress(job)} if job else {}
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), **extra})


class BatchTagForm(forms.Form):
    add = forms.TypedChoiceField(
        label=gettext_lazy("operation"),
        choices=[("1", gettext_lazy("add tags")), ("0", gettext_lazy("remove tags"))],
        coerce=lambda value: value == "1",
        initial="1",
        widget=forms.RadioSelect,
    )
    tags = forms.MultipleChoiceField(
        label=gettext_lazy("tags"), widget=forms.CheckboxSelectMultiple
    )

    def __init__(self, *args: Any, corp: Corp, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        tags = (
            Tag.objects.filter(corp=corp, deleted=False, group__deleted=False)
            .select_related("group")
            .order_by("-group__order", "group__name", "group_id", "-order", "name")
        )
        groups: dict[int, tuple[str, list[tuple[str, str]]]] = {}
        for tag in tags:
            groups.setdefault(tag.group_id, (tag.group.name, []))[1].append((tag.tag_id, tag.name))
        self.fields["tags"].choices = list(groups.values())


@admin.action(permissions=["change"], description=gettext_lazy("Add or remove tags…"))
def batch_tag(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> Any:
    """Choose tags for the selected customers (or all those the filters select, across pages)
    on an intermediate page; the job then runs in the background, with a progress page."""
    if not modeladmin.may_write_anywhere(request):  # the rows are those the user may write
        raise PermissionDenied
    corp_ids = list(queryset.order_by().values_list("corp_id", flat=True).distinct()[:2])
    if len(corp_ids) != 1:
        message = _("Choose customers of a single corp (filter the list by corp first).")
        modeladmin.message_user(request, message, messages.WARNING)
        return None
    corp = Corp.objects.get(pk=corp_ids[0])
    form = BatchTagForm(request.POST if "apply" in request.POST else None, corp=corp)
    if form.is_valid():
        try:
            job = batch_tag_job_create(
                corp=corp,
                contacts=queryset,
                tag_ids=form.cleaned_data["tags"],
                add=form.cleaned_data["add"],
                created_by=request.user.get_username(),
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            message = _("Batch tagging of %(count)d follow relations started.")
            modeladmin.message_user(request, message % {"count": job.total}, messages.SUCCESS)
            return HttpResponseRedirect(reverse("admin:contacts_batchtagjob_change", args=[job.pk]))
    relations = FollowRelation.objects.filter(
        external_contact__in=queryset.order_by().values("pk"), status=FollowRelation.Status.ACTIVE
    )
    context = {
        **modeladmin.admin_site.each_context(request),
        "opts": modeladmin.opts,
        "title": _("Add or remove tags"),
        "form": form,
        "corp": corp,
        "customer_count": queryset.count(),
        "relation_count": relations.count(),
        "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        "select_across": request.POST.get("select_across", "0"),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "media": modeladmin.media + form.media,
    }
    return TemplateResponse(request, "admin/contacts/tags/batch_tag.html", context)


# -- the customer's page: tags and timeline ----------------------------------------------------


class CustomerTagsInline(CorpScopedInline, admin.TabularInline):
    """Tags are per follow relation in WeCom: one line per staff member."""

    model = FollowRelation
    fk_name = "external_contact"
    fields = ["staff", "status", "tag_list"]
    personal = True  # rows labelled with the customer's name
    readonly_fields = fields
    verbose_name = gettext_lazy("tag")
    verbose_name_plural = gettext_lazy("tags")
    extra = 0

    def get_queryset(self, request: HttpRequest) -> QuerySet[FollowRelation]:
        live = (
            CustomerTag.objects.filter(tag__deleted=False)
            .select_related("tag__group")
            .order_by("tag__group__name", "tag__name")
        )
        return (
            super()
            .get_queryset(request)
            .select_related("staff")
            .prefetch_related(Prefetch("customer_tags", queryset=live, to_attr="live_tags"))
        )

    @admin.display(description=gettext_lazy("tags"))
    def tag_list(self, obj: FollowRelation) -> str:
        return "、".join(str(ct.tag) for ct in getattr(obj, "live_tags", [])) or "-"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class NewestTimelineFormSet(BaseInlineFormSet):
    def get_queryset(self) -> QuerySet[TimelineEvent]:
        if not hasattr(self, "_newest"):
            self._newest = super().get_queryset()[:TIMELINE_ROWS]
        return self._newest


class TimelineInline(CorpScopedInline, admin.TabularInline):
    """客户动态, newest first, times in the corp's zone (not the server's)."""

    model = TimelineEvent
    formset = NewestTimelineFormSet
    personal = True  # what the customer did and said, in words
    fk_name = "external_contact"
    fields = ["local_time", "kind", "staff", "summary"]
    readonly_fields = fields
    ordering = ["-occurred_at", "-pk"]
    extra = 0

    def get_queryset(self, request: HttpRequest) -> QuerySet[TimelineEvent]:
        return super().get_queryset(request).select_related("corp", "staff")

    @admin.display(description=gettext_lazy("time"))
    def local_time(self, obj: TimelineEvent) -> str:
        if obj.occurred_at is None:
            return ""
        return days.local_display(obj.occurred_at, obj.corp, seconds=True)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


ExternalContactAdmin.inlines = [*ExternalContactAdmin.inlines, CustomerTagsInline, TimelineInline]
ExternalContactAdmin.actions = [*(ExternalContactAdmin.actions or []), batch_tag]
