import pytest

from channels_app.models import Channel, LiveCode, PoolMember
from contacts.services import staff_get_or_create


@pytest.fixture
def channel(corp):
    return Channel.objects.create(corp=corp, name="朋友圈广告", code="pyq_0012", channel_type=2,
                                  utm_source="pyq")  # fmt: skip


@pytest.fixture
def staff(corp):
    """Our Staff rows for the sandbox corp's members staff01..staff03."""
    return [staff_get_or_create(corp=corp, userid=f"staff0{i}") for i in (1, 2, 3)]


@pytest.fixture
def make_code(corp, channel, staff):
    def make(mode="landing", caps=(None, None, None), strategy="least_loaded", **fields):
        code = LiveCode.objects.create(
            corp=corp, channel=channel, name=fields.pop("name", "618 海报"),
            slug=fields.pop("slug", f"{mode}-{LiveCode.objects.count() + 1}"),
            mode=mode, strategy=strategy, **fields,
        )  # fmt: skip
        caps = list(caps) + [None] * (len(staff) - len(caps))
        for member, cap in zip(staff, caps, strict=True):
            PoolMember.objects.create(live_code=code, staff=member, daily_cap=cap)
        return code

    return make
