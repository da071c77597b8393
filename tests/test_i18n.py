"""Simplified Chinese first, English on request; the committed catalogue is complete and compiled.

The .mo is committed so a fresh clone needs no gettext tools; these tests catch a .po edited
without recompiling, a fuzzy or empty entry, and a broken %(name)s placeholder.
"""

from __future__ import annotations

import ast
import gettext
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from django.apps import apps
from django.conf import settings as django_settings
from django.utils import translation
from django.utils.functional import Promise

from contacts.add_ways import ADD_WAY_LABELS, add_way_label
from contacts.models import ExternalContact
from scrm.wecom.sandbox.simulate import sandbox_customer_add

LOCALE_DIR = Path(django_settings.BASE_DIR) / "locale" / "zh_Hans" / "LC_MESSAGES"
PO = LOCALE_DIR / "django.po"
MO = LOCALE_DIR / "django.mo"
# The sandbox's models are developer tooling, named in English on purpose; its app name is not.
PROJECT_APPS = ("wecom", "contacts", "channels_app", "analytics")
# %(name)s for gettext; {name} where the text itself is a template (welcome messages).
PLACEHOLDER = re.compile(r"%\(\w+\)[sdif]|\{\w+\}")


# -- a small .po reader ------------------------------------------------------------------------


def _po_entries(path: Path = PO) -> list[dict]:
    """Entries as {"msgid", "msgid_plural", "msgstr": [..], "fuzzy", "line"}; obsolete skipped."""
    entries: list[dict] = []
    entry: dict = {}
    key = ""

    def finish() -> None:
        nonlocal entry
        if "msgid" in entry:
            entries.append(entry)
        entry = {}

    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#~"):
            if not line:
                finish()
            continue
        if line.startswith("#"):
            if "msgid" in entry and "msgstr" in entry:
                finish()
            if line.startswith("#,") and "fuzzy" in line:
                entry["fuzzy"] = True
            continue
        match = re.match(r'^(msgctxt|msgid_plural|msgid|msgstr(?:\[\d+\])?)\s+(".*")$', line)
        if match:
            key, value = match.group(1), ast.literal_eval(match.group(2))
            if key == "msgid" and "msgstr" in entry:
                finish()
            if key.startswith("msgstr"):
                entry.setdefault("msgstr", []).append(value)
            else:
                entry[key] = value
                entry.setdefault("line", number)
            continue
        assert line.startswith('"'), f"{path.name}:{number}: unexpected line {raw!r}"
        value = ast.literal_eval(line)
        if key.startswith("msgstr"):
            entry["msgstr"][-1] += value
        else:
            entry[key] += value
    finish()
    return entries


def _messages() -> list[dict]:
    return [entry for entry in _po_entries() if entry["msgid"]]


def _catalog(entries: list[dict]) -> dict[str, str]:
    """What a compiled .mo maps: the header, then msgid -> msgstr, untranslated skipped."""
    catalog = {}
    for entry in entries:
        if entry.get("fuzzy") and entry["msgid"]:
            continue
        # A context (pgettext) is part of the key, as gettext stores it: "context\x04msgid".
        msgid = f"{entry['msgctxt']}\x04{entry['msgid']}" if "msgctxt" in entry else entry["msgid"]
        if "msgid_plural" in entry:
            for index, text in enumerate(entry["msgstr"]):
                catalog[(msgid, index)] = text
        elif entry["msgstr"][0]:
            catalog[msgid] = entry["msgstr"][0]
    return catalog


def _mo_catalog(path: Path) -> dict:
    with path.open("rb") as handle:
        return dict(gettext.GNUTranslations(handle)._catalog)


# -- the catalogue -----------------------------------------------------------------------------


def test_every_message_is_translated_and_none_is_fuzzy():
    messages = _messages()
    assert len(messages) > 100
    untranslated = [e["msgid"] for e in messages if not all(e.get("msgstr", [""]))]
    fuzzy = [e["msgid"] for e in _po_entries() if e.get("fuzzy")]
    assert untranslated == []
    assert fuzzy == []


def test_placeholders_survive_translation():
    for entry in _messages():
        expected = sorted(PLACEHOLDER.findall(entry["msgid"]))
        for text in entry["msgstr"]:
            assert sorted(PLACEHOLDER.findall(text)) == expected, entry["msgid"]


def test_header_declares_utf8_and_the_language():
    (header,) = [entry for entry in _po_entries() if entry["msgid"] == ""]
    assert not header.get("fuzzy")
    assert "charset=UTF-8" in header["msgstr"][0]
    assert "Language: zh_Hans" in header["msgstr"][0]


def test_compiled_catalogue_matches_the_po():
    """The committed .mo says what the .po says: nobody edited one without the other."""
    assert MO.exists(), "run: manage.py compilemessages -l zh_Hans --ignore=.venv"
    compiled = _mo_catalog(MO)
    expected = _catalog(_po_entries())
    compiled.pop("", None)
    expected.pop("", None)
    assert compiled == expected


def test_mo_is_what_msgfmt_makes_of_the_po_today(tmp_path):
    msgfmt = shutil.which("msgfmt")
    if msgfmt is None:
        pytest.skip("gettext tools (msgfmt) not installed")
    fresh = tmp_path / "django.mo"
    result = subprocess.run(
        [msgfmt, "--check-format", "-o", str(fresh), str(PO)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert _mo_catalog(MO) == _mo_catalog(fresh), "recompile: manage.py compilemessages"


def test_every_translatable_model_label_is_in_the_catalogue():
    """Model and field names and choices of our apps were extracted (makemessages was rerun)."""
    msgids = {entry["msgid"] for entry in _messages()}
    labels: list[Promise] = [apps.get_app_config("wecom_sandbox").verbose_name]
    for config in apps.get_app_configs():
        if config.label not in PROJECT_APPS:
            continue
        labels.append(config.verbose_name)
        for model in config.get_models():
            labels += [model._meta.verbose_name, model._meta.verbose_name_plural]
            for field in model._meta.get_fields():
                labels.append(getattr(field, "verbose_name", None))
                labels += [label for _value, label in getattr(field, "flatchoices", None) or []]
    labels += list(ADD_WAY_LABELS.values())
    with translation.override("en"):
        missing = {
            str(label)
            for label in labels
            if isinstance(label, Promise) and str(label) not in msgids
        }
    assert missing == set()


# -- labels in code ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("add_way", "chinese", "english"),
    [
        (0, "未知来源", "Unknown source"),
        (1, "扫描二维码", "Scanned a QR code"),
        (3, "名片分享", "Business card shared"),
        (201, "内部成员共享", "Shared by an internal member"),
        (202, "管理员/负责人分配", "Assigned by an administrator"),
        (99, "未知添加方式 99", "Unknown add_way 99"),
    ],
)
def test_add_way_label_in_both_languages(add_way, chinese, english):
    with translation.override("zh-hans"):
        assert add_way_label(add_way) == chinese
    with translation.override("en"):
        assert add_way_label(add_way) == english
    assert add_way_label(None) == ""


def test_model_names_in_both_languages():
    with translation.override("zh-hans"):
        assert str(ExternalContact._meta.verbose_name_plural) == "客户"
        assert str(apps.get_model("contacts", "FirstSource")._meta.verbose_name) == "首次来源"
        assert str(apps.get_model("wecom", "CallbackEvent")._meta.verbose_name_plural) == (
            "回调收件箱"
        )
        assert str(apps.get_model("wecom", "ApiCall")._meta.verbose_name_plural) == "接口调用日志"
    with translation.override("en"):
        assert str(ExternalContact._meta.verbose_name_plural) == "customers"


# -- pages -------------------------------------------------------------------------------------


@pytest.fixture
def zh_default(settings) -> None:
    # What the project ships with; pinned so a developer's LANGUAGE_CODE=en does not flip it.
    settings.LANGUAGE_CODE = "zh-hans"
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def customer(sandbox_corp, post_event) -> ExternalContact:
    sandbox_customer, follow, _code = sandbox_customer_add(
        corp=sandbox_corp, userid="staff01", rng=random.Random(1), state="pyq_0012", add_way=1
    )
    post_event(
        "add_external_contact",
        follow.createtime,
        UserID="staff01",
        ExternalUserID=sandbox_customer.external_userid,
        State="pyq_0012",
    )
    return ExternalContact.objects.get(external_userid=sandbox_customer.external_userid)


def _text(response) -> str:
    assert response.status_code == 200
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


@pytest.mark.django_db
def test_admin_index_is_chinese_by_default(zh_default, admin_client):
    text = _text(admin_client.get("/admin/"))
    for chinese in ("客户管理", "客户", "成员", "企业", "回调收件箱", "接口调用日志"):
        assert chinese in text
    for english in ("Callback inbox", "API call log", "Customers"):
        assert english not in text


@pytest.mark.django_db
def test_admin_index_is_english_on_request(zh_default, admin_client):
    text = _text(admin_client.get("/admin/", HTTP_ACCEPT_LANGUAGE="en"))
    for english in ("Customers", "Callback inbox", "API call log", "Corps"):
        assert english in text
    assert "回调收件箱" not in text


@pytest.mark.django_db
def test_customers_changelist_is_chinese_by_default(zh_default, admin_client, customer):
    text = _text(admin_client.get("/admin/contacts/externalcontact/"))
    for chinese in ("客户", "首次添加方式", "添加方式", "首次添加时间", "扫描二维码", "名片分享"):
        assert chinese in text
    for english in ("Scanned a QR code", "First add way", "First added at"):
        assert english not in text
    assert customer.external_userid in text


@pytest.mark.django_db
def test_customers_changelist_is_english_on_request(zh_default, admin_client, customer):
    response = admin_client.get("/admin/contacts/externalcontact/", HTTP_ACCEPT_LANGUAGE="en")
    text = _text(response)
    for english in ("Customers", "First add way", "Scanned a QR code", "By first added at"):
        assert english in text
    assert "扫描二维码" not in text


@pytest.mark.django_db
def test_customer_change_page_labels_are_chinese(zh_default, admin_client, customer):
    text = _text(admin_client.get(f"/admin/contacts/externalcontact/{customer.pk}/change/"))
    for chinese in ("首次来源", "跟进关系", "添加方式", "渠道参数(state)", "补录"):
        assert chinese in text


@pytest.mark.django_db
def test_corp_form_help_and_errors_are_chinese(zh_default, admin_client, corp):
    url = f"/admin/wecom/corp/{corp.pk}/change/"
    assert "留空则保持当前值不变" in _text(admin_client.get(url))
    response = admin_client.post(
        url,
        {
            "corp_id": corp.corp_id,
            "name": corp.name,
            "encoding_aes_key": "A" * 42,
            "time_zone": corp.time_zone,
            "is_active": "on",
        },
    )
    assert "EncodingAESKey 必须为 43 位字母或数字" in _text(response)


@pytest.mark.django_db
def test_landing_page_speaks_the_deployments_language_not_the_browsers(zh_default, client):
    # No code, no corp: the deployment's language (a code's pages: tests/channels/
    # test_landing_language.py).
    response = client.get("/l/no-such-code/")
    assert response.status_code == 404
    assert "链接不存在" in response.content.decode()
    response = client.get("/l/no-such-code/", HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 404
    assert "链接不存在" in response.content.decode()
